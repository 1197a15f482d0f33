"""GPU check for the ``paper`` preset: bf16 training steps at the largest batch that fits.

Runs in well under 5 minutes on one GPU: finds the largest per-GPU batch (doubling from 16 until
out-of-memory, then keeping the last that fit), then times 50 full training steps (three towers,
CLIBD loss, AdamW) under bf16 autocast on synthetic inputs of the real shapes, and prints samples/s
and peak memory as JSON. Never part of the tests.

    python bench/gpu_check.py [--steps 50] [--out docs/bench_gpu.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from clibd_core import build_model
from clibd_core.loss import clibd_loss


def synthetic_batch(model, batch: int, device: torch.device) -> dict:
    """Random inputs with the paper preset's shapes: 224-px images, 133 DNA ids, 20 text tokens."""
    generator = torch.Generator().manual_seed(0)
    texts = model.text_batch(["Diptera Cecidomyiidae not_classified not_classified"] * batch)
    return {
        "image": torch.rand(batch, 3, 224, 224, generator=generator).to(device),
        "dna": {"input_ids": torch.randint(3, 1027, (batch, 133), generator=generator).to(device)},
        "text": {k: v.to(device) for k, v in texts.items()},
    }


def run_steps(model, optimizer, batch: dict, steps: int) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            outputs = model(batch)
            scale = outputs.pop("logit_scale")
            loss, _ = clibd_loss({k: v.float() for k, v in outputs.items()}, scale)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    return time.perf_counter() - start


def fits(model, optimizer, size: int, device: torch.device) -> bool:
    try:
        run_steps(model, optimizer, synthetic_batch(model, size, device), 1)
        return True
    except torch.OutOfMemoryError:
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--max-batch", type=int, default=1024)
    parser.add_argument("--out", default="docs/bench_gpu.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check needs a GPU")
    device = torch.device("cuda")
    model = build_model("paper").to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    size = 16
    while size * 2 <= args.max_batch and fits(model, optimizer, size * 2, device):
        size *= 2
    batch = synthetic_batch(model, size, device)
    run_steps(model, optimizer, batch, 3)  # warm-up
    torch.cuda.reset_peak_memory_stats()
    seconds = run_steps(model, optimizer, batch, args.steps)
    result = {
        "gpu": torch.cuda.get_device_name(),
        "preset": "paper",
        "precision": "bf16 autocast",
        "batch": size,
        "steps": args.steps,
        "samples_per_s": round(size * args.steps / seconds, 1),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=2))
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
