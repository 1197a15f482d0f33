"""Per-rank barcode distances of the synthetic world next to the real BOLD barcodes.

For pairs of full-length (658 bp) barcodes that share a species, a genus (not the species), a family
(not the genus) and an order (not the family), the p-distance (share of differing sites, Ns ignored)
is sampled in both data sets; medians and the 10th/90th percentiles go to
docs/synthetic_calibration.json and the histograms to docs/figures/barcode_distances.png.

    .venv/bin/python bench/synthetic_calibration.py
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from clibd_core.data.bold import read_bold_tsv  # noqa: E402
from clibd_core.data.synthetic import WorldConfig, build_tree, sample_specimens  # noqa: E402
from clibd_core.taxonomy import MISSING, Taxonomy  # noqa: E402

BOLD = Path(__file__).resolve().parents[2] / "shared" / "data" / "bold" / "bold_insects_dev.tsv.gz"
LEVELS = (("species", None), ("genus", "species"), ("family", "genus"), ("order", "family"))
PAIRS = 3000


def pair_distances(items: list[tuple[Taxonomy, str]], seed: int = 0) -> dict[str, np.ndarray]:
    """Sampled p-distances per level between full-length barcodes (see module docstring)."""
    items = [(t, s) for t, s in items if len(s) == 658 and s.count("N") < 5 and t.species != MISSING]
    codes = np.frombuffer("".join(s for _, s in items).encode(), dtype=np.uint8).reshape(-1, 658)
    rng = random.Random(seed)
    result = {}
    for level, child in LEVELS:
        groups = defaultdict(list)
        for index, (taxonomy, _) in enumerate(items):
            groups[taxonomy.get(level)].append(index)
        pools = [g for g in groups.values() if len(g) > 1]
        distances = []
        for _ in range(PAIRS * 60):
            if len(distances) == PAIRS:
                break
            i, j = rng.sample(rng.choice(pools), 2)
            if child and items[i][0].get(child) == items[j][0].get(child):
                continue
            known = (codes[i] != ord("N")) & (codes[j] != ord("N"))
            distances.append(float((codes[i][known] != codes[j][known]).mean()))
        result[level] = np.array(distances)
    return result


def main() -> None:
    if not BOLD.exists():
        raise SystemExit(f"{BOLD} is absent: the calibration needs the real BOLD barcodes")
    real = pair_distances([(r.taxonomy, r.barcode) for r in read_bold_tsv(BOLD).records])
    config = WorldConfig(n_records=20000, seed=0)
    specimens = sample_specimens(config, build_tree(config))
    synthetic = pair_distances([(s.species.taxonomy, s.barcode) for s in specimens])
    labels = {
        "species": "same species",
        "genus": "same genus,\nother species",
        "family": "same family,\nother genus",
        "order": "same order,\nother family",
    }
    summary = {}
    figure, axes = plt.subplots(1, 4, figsize=(14, 3.2), sharey=False)
    for axis, (level, _) in zip(axes, LEVELS, strict=True):
        bins = np.linspace(0, 0.32 if level != "species" else 0.03, 40)
        axis.hist(real[level], bins=bins, alpha=0.6, density=True, label="real BOLD")
        axis.hist(synthetic[level], bins=bins, alpha=0.6, density=True, label="synthetic")
        axis.set_title(labels[level], fontsize=10)
        axis.set_xlabel("p-distance")
        summary[level] = {
            name: {
                "p10": float(np.percentile(d, 10)),
                "median": float(np.median(d)),
                "p90": float(np.percentile(d, 90)),
            }
            for name, d in (("real", real[level]), ("synthetic", synthetic[level]))
        }
    axes[0].legend()
    figure.tight_layout()
    Path("docs/figures").mkdir(parents=True, exist_ok=True)
    figure.savefig("docs/figures/barcode_distances.png", dpi=110)
    Path("docs/synthetic_calibration.json").write_text(json.dumps(summary, indent=2))
    for level, values in summary.items():
        print(level, {k: round(v["median"], 4) for k, v in values.items()})


if __name__ == "__main__":
    main()
