"""Embedding throughput of both presets (images/s, barcodes/s at batch 1 and 32) next to the FLOP bound.

The bound is this machine's measured fp32 matmul peak divided by the model's FLOPs per item (counted
by torch's FlopCounterMode), i.e. what a perfectly compute-bound forward could reach. For ``paper``
the same forward through plain timm / transformers modules (pre-made tensors, no pre-processing) is
timed too: the app's encoders should reach ≥ 80 % of it.

    .venv/bin/python bench/embedding_throughput.py [--presets lite,paper] [--out docs/bench_embedding.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from clibd_core import build_model

SHARED_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "bioscan_images"
BARCODE = (
    "AACATTATATTTTATTTTTGGTGCATGAGCAGGAATAGTAGGAACATCCTTAAGAATACTAATTCGAGCTGAATTAGGAAATCCTGGATCATTAATTGGTGACGAT"
    "CAAATTTATAATGTAATTGTCACTGCACATGCTTTTGTAATAATTTTTTTTATAGTTATGCCAATTATAATTGGAGGATTTGGAAATTGATTAGTTCCTTTAATAT"
    "TAGGAGCTCCTGATATAGCCTTTCCTCGAATGAATAACATGAGATTTTGACTGCTCCCTCCTTCATTGACCTTGCTCCTTATAAGCAGCATAGTTGAAAGAGGTACT"
    "GGCACAGGATGAACAGTTTACCCCCCCCTTTCTAGTAATATTGCCCATAGAGGAGCCTCGGTTGATTTAGCTATTTTTAGTCTTCATTTAGCTGGAATTTCCTCAAT"
    "TTTAGGAGCTGTAAATTTTATCACTACAATTATTAATATACGATCAGTATATAACATTTGATCGAATACCTTTATTTGTTTGATCAGTAGGAATTACTGCCCTATT"
)


def peak_matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def items_per_second(run, batch: int, min_seconds: float) -> float:
    run()  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds or done < 2 * batch:
        run()
        done += batch
    return done / (time.perf_counter() - start)


def flops_per_item(forward, batch: int) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        forward()
    return float(counter.get_total_flops()) / batch


def eager_image_forward(tower, pixels: torch.Tensor) -> torch.Tensor:
    """The image tower through its eager modules: TorchScript (lite's CPU path) hides FLOPs from the counter."""
    if hasattr(tower, "backbone"):
        return tower.proj(tower.backbone(pixels))
    return tower(pixels)


def eager_dna_forward(tower, tokens: dict) -> torch.Tensor:
    """The DNA tower on its plain path: PyTorch's fused inference kernel for transformer layers is
    invisible to the FLOP counter, so FLOPs are counted in training mode (dropout only; no state)."""
    tower.train()
    try:
        return tower(**tokens)
    finally:
        tower.eval()


def sample_images(count: int) -> list[Image.Image]:
    """Real 256-px BIOSCAN crops where ../shared is present, else random images of that size."""
    crops = sorted(SHARED_IMAGES.glob("BIOUG*.jpg"))
    if crops:
        pictures = [Image.open(path).convert("RGB") for path in crops]
    else:
        pictures = [Image.fromarray(torch.randint(0, 255, (256, 256, 3), dtype=torch.uint8).numpy())]
    return [pictures[i % len(pictures)] for i in range(count)]


def bench_preset(preset: str, peak: float, min_seconds: float) -> list[dict]:
    model = build_model(preset)
    rows = []
    for batch in (1, 32):
        images, barcodes = sample_images(batch), [BARCODE] * batch
        pixels, tokens = model.image_batch(images), model.dna_batch(barcodes)
        cases = {
            "image": (
                lambda i=images, b=batch: model.encode_images(i, batch_size=b),
                lambda p=pixels: eager_image_forward(model.image_encoder, p),
            ),
            "dna": (
                lambda s=barcodes, b=batch: model.encode_barcodes(s, batch_size=b),
                lambda t=tokens: eager_dna_forward(model.dna_encoder, t),
            ),
        }
        for modality, (encode, forward) in cases.items():
            flops = flops_per_item(forward, batch)
            row = {
                "preset": preset,
                "modality": modality,
                "batch": batch,
                "items_per_s": items_per_second(encode, batch, min_seconds),
                "gflops_per_item": flops / 1e9,
                "flop_bound_items_per_s": peak * 1e9 / flops,
            }
            if preset == "paper":
                row["plain_forward_items_per_s"] = plain_forward_rate(modality, batch, pixels, tokens, min_seconds)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def plain_forward_rate(modality: str, batch: int, pixels, tokens, min_seconds: float) -> float:
    """The same architecture straight from timm / transformers on ready tensors: the reference speed."""
    if modality == "image":
        import timm

        vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=768).eval()

        def run() -> None:
            with torch.inference_mode():
                vit(pixels)
    else:
        from transformers import BertConfig, BertForMaskedLM

        bert = BertForMaskedLM(BertConfig(vocab_size=1027, tie_word_embeddings=False)).eval()
        bert.cls.predictions.decoder = torch.nn.Linear(768, 768)

        def run() -> None:
            with torch.inference_mode():
                bert(input_ids=tokens["input_ids"]).logits.softmax(-1).mean(1)

    return items_per_second(run, batch, min_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="lite,paper")
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum timing per case")
    parser.add_argument("--out", default="docs/bench_embedding.json")
    args = parser.parse_args()
    peak = peak_matmul_gflops()
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s on {torch.get_num_threads()} threads", flush=True)
    rows = [row for preset in args.presets.split(",") for row in bench_preset(preset, peak, args.seconds)]
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()},
        "peak_matmul_gflops": peak,
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
