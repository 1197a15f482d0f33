"""The photo recipe on real photos: Leeds butterflies (832 photos, 10 species), 30 % of every species held out.

Exactly what a lab runs, as commands:
    clibd train --data train.csv --modalities image,text --out RUN        (the photo recipe, no other flag)
    clibd build-library --model RUN --data train.csv --out LIB
    clibd identify --library LIB --images <held-out photos> --out results.csv
and beside it the frozen backbone (the same recipe with ``freeze: [image_backbone, text_backbone]``), so
the gain of fine-tuning is visible. Reported: species / genus top-1 of the held-out photos, how many
answers reach species confidence ≥ 0.8 and how often those are right, and the wall time of each step.

    .venv/bin/python bench/real_photos.py [--seed 0] [--work runs/bench_photos]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

LEEDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "leeds_butterflies"
OUT = Path(__file__).resolve().parents[1] / "docs" / "bench_real_photos.json"
HELD_OUT = 0.3


def clibd(*arguments: str) -> float:
    started = time.time()
    subprocess.run([sys.executable, "-m", "clibd_core.cli", *arguments], check=True)
    return time.time() - started


def split(seed: int, work: Path) -> tuple[Path, pd.DataFrame]:
    labels = pd.read_csv(LEEDS / "labels.csv")
    labels["file"] = [str(LEEDS / f) for f in labels["file"]]
    rng = np.random.default_rng(seed)
    picked = [
        index
        for _, group in labels.groupby("species")
        for index in group.index[rng.permutation(len(group))[: round(HELD_OUT * len(group))]]
    ]
    held = labels.loc[picked]
    work.mkdir(parents=True, exist_ok=True)
    train_csv = work / "train.csv"
    labels.drop(index=held.index).drop(columns=["common_name"]).to_csv(train_csv, index=False)
    return train_csv, held


def evaluate(run: Path, train_csv: Path, held: pd.DataFrame, work: Path, name: str) -> dict:
    library, results = work / f"{name}_library", work / f"{name}_results.csv"
    seconds = {
        "build_library_s": clibd(
            "build-library", "--model", str(run), "--data", str(train_csv), "--out", str(library), "--overwrite"
        )
    }
    seconds["identify_s"] = clibd(
        "identify", "--library", str(library), "--images", *held["file"], "--out", str(results)
    )
    answers = pd.read_csv(results, comment="#", dtype={"query_id": str})
    truth = held.assign(query_id=[Path(f).stem for f in held["file"]]).set_index("query_id")
    answers = answers.set_index("query_id").loc[truth.index]
    confident = answers["species_conf"] >= 0.8
    right = answers["species"] == truth["species"]
    return {
        "species_top1": float(right.mean()),
        "genus_top1": float((answers["genus"] == truth["genus"]).mean()),
        "species_confident_share": float(confident.mean()),
        "species_confident_right": float(right[confident].mean()) if confident.any() else float("nan"),
        **seconds,
    }


def run_seconds(run: Path) -> float:
    """Wall time of a training run: from its resolved config (written first) to its final test line."""
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    return round(last["time"] - (run / "train_config.json").stat().st_mtime, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="runs/bench_photos")
    args = parser.parse_args()
    if not LEEDS.exists():
        raise SystemExit(f"{LEEDS} is absent")
    work = Path(args.work) / f"seed{args.seed}"
    train_csv, held = split(args.seed, work)
    frozen_config = work / "frozen.yaml"
    frozen_config.write_text("freeze: [image_backbone, text_backbone]\nmixed_precision: 'no'\n")
    report = {"photos": {"train": len(pd.read_csv(train_csv)), "held_out": len(held)}, "seed": args.seed}
    for name, extra in (("fine_tuned", []), ("frozen_backbone", ["--config", str(frozen_config)])):
        run = work / name
        if not (run / "best").is_dir():
            clibd("train", "--data", str(train_csv), "--modalities", "image,text", "--out", str(run), *extra)
        report.setdefault("results", {})[name] = {
            "train_s": run_seconds(run),
            **evaluate(run, train_csv, held, work, name),
        }
        status = json.loads((run / "status.json").read_text())
        report["results"][name]["steps"] = status["step"]
    OUT.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
