"""A species classifier beside the photo recipe's loss, for training only.

A linear layer on the image embedding (before it is normalised), trained by plain cross-entropy over
the training taxa. The taxonomy loss alone (each photo against the text embeddings of every taxon, at a
learned temperature) trailed a plain cross-entropy fine-tune of the same backbone on 8 photos a species;
the head gives the backbone and the embedding that fine-tune's strong per-species gradient, so the
photos' neighbours in the shared space, which the library searches, fall within their species
(bench/photo_recipe.py, docs/BENCHMARKS.md). The head is dropped after training: answers come from the
library's neighbours, whose species need not be the training taxa.
"""

from __future__ import annotations

import torch
from torch import nn

from clibd_core.models.clibd import CLIBDModel


class WithSpeciesHead(nn.Module):
    """``model`` plus ``species_head``; its forward adds ``species_logits`` to the model's outputs.

    One module, so that Accelerate's DistributedDataParallel keeps the head's gradients in step across
    processes as it does the model's."""

    def __init__(self, model: CLIBDModel, n_taxa: int) -> None:
        super().__init__()
        self.model = model
        self.species_head = nn.Linear(model.config.embed_dim, n_taxa)

    def forward(self, batch: dict[str, object]) -> dict[str, torch.Tensor]:
        outputs = self.model(batch)
        outputs["species_logits"] = self.species_head(outputs["image_projected"])
        return outputs
