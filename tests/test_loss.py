"""The CLIBD loss against a brute-force double loop, and its cross-process gradient in a real gloo group."""

from __future__ import annotations

import itertools
import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from clibd_core.loss import clibd_loss
from tests.ports import free_port


def brute_force_loss(features: dict[str, torch.Tensor], scale: float) -> float:
    terms = []
    for a, b in itertools.permutations(features, 2):
        x, y = features[a].tolist(), features[b].tolist()
        n = len(x)
        total = 0.0
        for i in range(n):
            logits = [scale * sum(p * q for p, q in zip(x[i], y[j], strict=True)) for j in range(n)]
            log_norm = math.log(sum(math.exp(v) for v in logits))
            total += log_norm - logits[i]
        terms.append(total / n)
    return sum(terms) / len(terms)


@pytest.mark.parametrize("modalities", [("image", "dna"), ("image", "dna", "text"), ("dna", "text")])
def test_loss_matches_double_loop(modalities):
    generator = torch.Generator().manual_seed(0)
    features = {m: F.normalize(torch.randn(6, 5, generator=generator, dtype=torch.float64), dim=-1) for m in modalities}
    logit_scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64)
    loss, pairs = clibd_loss(features, logit_scale)
    assert len(pairs) == len(modalities) * (len(modalities) - 1)
    assert loss.item() == pytest.approx(brute_force_loss(features, math.exp(logit_scale.item())), rel=1e-10)


def test_loss_rejects_one_modality_and_ragged_batches():
    with pytest.raises(ValueError, match="two modalities"):
        clibd_loss({"image": torch.ones(2, 3)}, torch.tensor(0.0))
    with pytest.raises(ValueError, match="batch sizes"):
        clibd_loss({"image": torch.ones(2, 3), "dna": torch.ones(3, 3)}, torch.tensor(0.0))


def _toy_problem():
    generator = torch.Generator().manual_seed(1)
    inputs = {m: torch.randn(8, 5, generator=generator) for m in ("image", "dna", "text")}
    weights = {m: torch.randn(5, 4, generator=generator) for m in inputs}
    return inputs, weights


def _grads(inputs, weights, rows):
    params = {m: w.clone().requires_grad_() for m, w in weights.items()}
    logit_scale = torch.tensor(2.0, requires_grad=True)
    features = {m: F.normalize(inputs[m][rows] @ params[m], dim=-1) for m in inputs}
    loss, _ = clibd_loss(features, logit_scale)
    loss.backward()
    return loss.detach(), {**{m: p.grad for m, p in params.items()}, "logit_scale": logit_scale.grad}


def _worker(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    inputs, weights = _toy_problem()
    per_rank = 8 // world
    loss, grads = _grads(inputs, weights, slice(rank * per_rank, (rank + 1) * per_rank))
    for grad in grads.values():  # what DDP does to parameter gradients
        dist.all_reduce(grad)
        grad /= world
    if rank == 0:
        queue.put((loss.numpy(), {name: grad.numpy() for name, grad in grads.items()}))
    dist.destroy_process_group()


@pytest.mark.slow
def test_gathered_loss_gradients_equal_single_process_full_batch():
    port = free_port()
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    mp.start_processes(_worker, args=(2, port, queue), nprocs=2, start_method="spawn", join=True)
    loss_2, grads_2 = queue.get()
    inputs, weights = _toy_problem()
    loss_1, grads_1 = _grads(inputs, weights, slice(0, 8))
    assert torch.allclose(torch.from_numpy(loss_2), loss_1, atol=1e-6)
    for name in grads_1:
        assert torch.allclose(torch.from_numpy(grads_2[name]), grads_1[name], atol=1e-6), name
    # Without the gather, each process would see a 4-sample batch: a different loss.
    local_loss, _ = _grads(inputs, weights, slice(0, 4))
    assert not torch.allclose(local_loss, loss_1, atol=1e-3)
