"""The photo recipe against a plain fine-tune, on a hard small set: Leeds butterflies with only
``--per-species`` (8) training photos of each of the 10 species, every other photo held out, several seeds.

For every seed, exactly what a lab runs:
    clibd train --data train.csv --modalities image,text --out RUN      (the photo recipe, no other flag)
    clibd build-library --model RUN --data train.csv --out LIB
    clibd identify --library LIB --images <held-out photos> --out results.csv
and beside it a plain cross-entropy fine-tune of the same backbone (EfficientNet-Lite0, ImageNet
weights, a linear classifier on the pooled features, the same augmentation, optimiser, precision,
batch size and number of steps as the recipe's run took: the same time budget), answered by its argmax.
Reported per seed and method: species and genus top-1 of the held-out photos, training seconds.

    .venv/bin/python bench/photo_recipe.py [--seeds 0 1 2] [--per-species 8] [--work runs/bench_photo_recipe]
        [--out docs/bench_photo_recipe.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_photos import LEEDS, clibd, evaluate, run_seconds  # noqa: E402

from clibd_core.data.datasets import balanced_batches  # noqa: E402
from clibd_core.data.splits import photo_validation_count  # noqa: E402
from clibd_core.data.transforms import eval_transform, open_image, train_transform  # noqa: E402
from clibd_core.models.image import LiteImageTower  # noqa: E402
from clibd_core.presets import load_preset  # noqa: E402
from clibd_core.train.config import TrainConfig  # noqa: E402
from clibd_core.train.sizing import fit_to_set  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "bench_photo_recipe.json"


def split(seed: int, per_species: int, work: Path) -> tuple[Path, pd.DataFrame]:
    """``per_species`` photos of every species to train on (train.csv), the rest held out."""
    labels = pd.read_csv(LEEDS / "labels.csv").drop(columns=["common_name"])
    labels["file"] = [str(LEEDS / f) for f in labels["file"]]
    rng = np.random.default_rng(seed)
    picked = [
        index
        for _, group in labels.groupby("species")
        for index in group.index[rng.permutation(len(group))[:per_species]]
    ]
    work.mkdir(parents=True, exist_ok=True)
    train_csv = work / "train.csv"
    labels.loc[picked].to_csv(train_csv, index=False)
    return train_csv, labels.drop(index=picked)


def plain_fine_tune(train: pd.DataFrame, held: pd.DataFrame, steps: int, batch_size: int, seed: int) -> dict:
    """Cross-entropy over the species with a linear head on the whole fine-tuned backbone."""
    torch.manual_seed(seed)
    spec = load_preset("lite").image_transform
    augment, plain = train_transform(spec, "photos"), eval_transform(spec)
    names = sorted(train["species"].unique())
    target = torch.tensor([names.index(s) for s in train["species"]])
    photos = [open_image(f) for f in train["file"]]
    tower = LiteImageTower(embed_dim=len(names), pretrained=True)  # its projection is the classifier
    optimiser = torch.optim.AdamW(tower.parameters(), lr=5e-4, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=5e-4, total_steps=steps, pct_start=0.3)
    started, done, epoch = time.time(), 0, 0
    while done < steps:
        for batch in balanced_batches(list(train["species"]), batch_size, seed, epoch):
            tower.train()
            pixels = torch.stack([augment(photos[i]) for i in batch])
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.cross_entropy(tower(pixels).float(), target[batch])
            loss.backward()
            optimiser.step()
            schedule.step()
            optimiser.zero_grad(set_to_none=True)
            done += 1
            if done == steps:
                break
        epoch += 1
    seconds = time.time() - started
    tower.eval()
    predicted = []
    with torch.inference_mode():
        for start in range(0, len(held), 64):
            pixels = torch.stack([plain(open_image(f)) for f in held["file"].iloc[start : start + 64]])
            predicted += [names[i] for i in tower(pixels).argmax(dim=1).tolist()]
    genus_of = dict(zip(train["species"], train["genus"], strict=False))
    predicted = pd.Series(predicted, index=held.index)
    return {
        "species_top1": float((predicted == held["species"]).mean()),
        "genus_top1": float((predicted.map(genus_of) == held["genus"]).mean()),
        "train_s": round(seconds, 1),
        "steps": steps,
    }


def recipe(train_csv: Path, held: pd.DataFrame, work: Path, extra: list[str]) -> dict:
    run = work / "recipe"
    if not (run / "best").is_dir():
        clibd("train", "--data", str(train_csv), "--modalities", "image,text", "--out", str(run), *extra)
    status = json.loads((run / "status.json").read_text())
    config = TrainConfig(data=str(train_csv), out=str(run)).resumed()
    per_species = pd.read_csv(train_csv)["species"].value_counts()
    n_train = int(sum(n - photo_validation_count(n) for n in per_species))
    return {
        "train_s": run_seconds(run),
        "steps": status["step"],
        "batch_size": fit_to_set(config, n_train).config.batch_size,  # what the run used (a small set: smaller)
        **evaluate(run, train_csv, held, work, "recipe"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--per-species", type=int, default=8)
    parser.add_argument("--work", default="runs/bench_photo_recipe")
    parser.add_argument("--label", default="recipe", help="the name of this run in the JSON (a variant)")
    parser.add_argument("--config", help="a config file given to the recipe's run (a variant to measure)")
    parser.add_argument("--out", type=Path, default=OUT, help="the JSON kept (one per --per-species)")
    args = parser.parse_args()
    if not LEEDS.exists():
        raise SystemExit(f"{LEEDS} is absent")
    report = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if report.setdefault("per_species", args.per_species) != args.per_species:
        raise SystemExit(f"{args.out} holds runs of {report['per_species']} photos a species: pass another --out")
    for seed in args.seeds:
        work = Path(args.work) / args.label / f"seed{seed}"
        train_csv, held = split(seed, args.per_species, work)
        extra = ["--seed", str(seed), *(["--config", args.config] if args.config else [])]
        ours = recipe(train_csv, held, work, extra)
        seeds = report.setdefault("seeds", {}).setdefault(str(seed), {"held_out": len(held)})
        seeds[args.label] = ours
        plain = f"plain_fine_tune_{ours['steps']}_steps"  # the same number of steps as the recipe's run
        if plain not in seeds:
            train = pd.read_csv(train_csv)
            seeds[plain] = plain_fine_tune(train, held, ours["steps"], ours["batch_size"], seed)
        args.out.write_text(json.dumps(report, indent=2))
        print(json.dumps({seed: seeds}, indent=2), flush=True)


if __name__ == "__main__":
    main()
