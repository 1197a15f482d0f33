"""The CLIBD contrastive loss over any subset of {image, DNA, text}, with cross-process gathering.

For every ordered pair (a, b) of distinct modalities the logits are exp(s)·a·bᵀ and each sample's
only positive is its own partner (same-species samples in a batch are negatives); the loss is the mean
cross-entropy over all ordered pairs. Across processes the features are gathered *with gradient*, so
every process sees the global batch and the gradient equals that of one process holding it all.
"""

from __future__ import annotations

import itertools
import warnings

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.nn.functional import all_gather


def gather_with_grad(features: torch.Tensor) -> torch.Tensor:
    """Concatenate ``features`` from every process in rank order, keeping the autograd graph.

    All processes must hold the same number of rows. Without an initialised process group (or with one
    process) the tensor comes back unchanged.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return features
    with warnings.catch_warnings():  # the public autograd all_gather is deprecated in name only; it works on gloo
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(all_gather(features), dim=0)


def clibd_loss(
    features: dict[str, torch.Tensor], logit_scale: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(loss, per-pair losses)`` for L2-normalised features of ≥ 2 modalities, row i = sample i.

    The per-pair dict is keyed ``"image->dna"`` etc. and is what the training job logs.
    """
    if len(features) < 2:
        raise ValueError(f"the CLIBD loss needs at least two modalities, got {sorted(features)}")
    gathered = {name: gather_with_grad(value) for name, value in features.items()}
    sizes = {value.shape[0] for value in gathered.values()}
    if len(sizes) != 1:
        raise ValueError(f"every modality needs one row per sample; got batch sizes {sorted(sizes)}")
    labels = torch.arange(sizes.pop(), device=logit_scale.device)
    scale = logit_scale.exp()
    pair_losses = {
        f"{a}->{b}": F.cross_entropy(scale * gathered[a] @ gathered[b].T, labels)
        for a, b in itertools.permutations(gathered, 2)
    }
    return torch.stack(list(pair_losses.values())).mean(), pair_losses
