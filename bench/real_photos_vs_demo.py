"""Real photos against the synthetic demo library: does any answer claim a confident (≥ 0.8) rank?

Every photo of ../shared/data/bioscan_images (23 BIOSCAN-1M photos) and ../shared/data/leeds_butterflies
(832 photos of 10 butterfly species) is identified against reference_db/demo with the demo model, once
against the library's images and once against its barcodes (the cross-modal case). None of these insects
exists in the synthetic world, so the honest answer names no rank.

    .venv/bin/python bench/real_photos_vs_demo.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from clibd_core.library.identification import Query
from clibd_core.library.naming import CONFIDENT, OUT_OF_DOMAIN_MESSAGE
from clibd_core.library.search import identify
from clibd_core.library.store import Library
from clibd_core.models.clibd import load_model
from clibd_core.reference import DEMO_LIBRARY, DEMO_MODEL

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parents[1] / "docs" / "bench_real_photos_vs_demo.json"


def main() -> None:
    paths = sorted((DATA / "bioscan_images").glob("*.jpg")) + sorted((DATA / "leeds_butterflies" / "images").glob("*"))
    if not paths:
        raise SystemExit(f"no photos under {DATA}")
    library, model = Library.open(DEMO_LIBRARY), load_model(DEMO_MODEL, device="cpu")
    report = {"photos": len(paths), "library": library.name, "version": library.version_dir.name}
    for keys in ("image", "dna"):
        started = time.time()
        results = identify(library, model, [Query(p.stem, image=p) for p in paths], image_keys=keys)
        top = np.array([max((c.confidence for c in r.ranks.values()), default=0.0) for r in results])
        report[f"against_{keys}"] = {
            "any_rank_confident": int((top >= CONFIDENT).sum()),
            "out_of_domain_flagged": int(sum(OUT_OF_DOMAIN_MESSAGE in r.warnings for r in results)),
            "highest_confidence": float(top.max()),
            "seconds": round(time.time() - started, 1),
        }
    OUT.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
