"""A 10,000-specimen project (sheet + barcodes from the shipped real BOLD records, 106 plates) on SQLite
and on a PostgreSQL server of its own: import, identify (the default library and model), the review
queue's next item and one review action, the Darwin Core Archive of all named specimens written and re-read by
python-dwca-reader. Results: docs/BENCHMARKS.md, bench_project_scale.json.

    .venv/bin/python bench/project_scale.py [--plates 106]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clibd_core.projects.db import session_scope  # noqa: E402
from clibd_core.projects.identify import identify_project  # noqa: E402
from clibd_core.projects.intake import import_files  # noqa: E402
from clibd_core.projects.registry import create_project, get_project  # noqa: E402
from clibd_core.projects.review import next_for_review, project_status, review_specimen  # noqa: E402
from clibd_core.publish.dwca import write_dwca  # noqa: E402
from clibd_core.reference import DEFAULT_LIBRARY, DEFAULT_MODEL  # noqa: E402
from tests.plates import write_plates  # noqa: E402
from tests.postgres import PostgresUnavailable, new_database, start_server, stop_server  # noqa: E402


def timed(function, *args, **kwargs) -> tuple[float, object]:
    begun = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - begun, result


def next_item(url: str) -> str:
    with session_scope(url) as session:
        return next_for_review(session, get_project(session, "season")).sample_id


def run(url: str, plates: dict) -> dict:
    with session_scope(url) as session:
        create_project(session, "season")
    import_s, plan = timed(import_files, "season", plates["sheet"], [plates["fasta"]], url=url)
    identify_s, summary = timed(identify_project, "season", DEFAULT_LIBRARY, DEFAULT_MODEL, url=url)
    queue_ms, review_ms = [], []
    for _ in range(50):
        seconds, sample = timed(next_item, url)
        queue_ms.append(1000 * seconds)
        seconds, _ = timed(review_specimen, "season", sample, "bench", "not_identifiable", url=url)
        review_ms.append(1000 * seconds)
    status_s, status = timed(lambda: _status(url))
    archive = Path(tempfile.mkdtemp(prefix="clibd-dwca-")) / "season.zip"
    with session_scope(url) as session:
        project = get_project(session, "season")
        project.title, project.licence = "Bench season", "CC-BY"
        project.contact = {"name": "Bench", "email": "bench@example.org"}
    export_s, report = timed(write_dwca, "season", archive, verified_only=False, url=url)
    reread_s, reread = timed(_reread, archive)
    return {
        "specimens": len(plan.specimens),
        "barcodes": len(plan.barcodes),
        "import_s": round(import_s, 2),
        "identify_s": round(identify_s, 2),
        "identified": summary["identified"],
        "queue_next_ms_median": round(statistics.median(queue_ms), 2),
        "queue_next_ms_max": round(max(queue_ms), 2),
        "review_action_ms_median": round(statistics.median(review_ms), 2),
        "review_action_ms_max": round(max(review_ms), 2),
        "status_s": round(status_s, 3),
        "verified_or_not_identifiable": status["reviewed"],
        "dwca_occurrences": report.occurrences,
        "dwca_write_s": round(export_s, 2),
        "dwca_reread_s": round(reread_s, 2),
        "dwca_reread_rows": reread,
    }


def _reread(archive: Path) -> int:
    """Every core row and its extensions, read by the independent reader the tests use."""
    from dwca.read import DwCAReader

    with DwCAReader(str(archive)) as dwca:
        return sum(1 + len(row.extensions) for row in dwca)


def _status(url: str) -> dict:
    with session_scope(url) as session:
        return project_status(session, get_project(session, "season"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plates", type=int, default=106)
    parser.add_argument("--out", default="docs/bench_project_scale.json")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="clibd-project-bench-"))
    plates = write_plates(folder / "data", plates=args.plates)
    results = {"sqlite": run(f"sqlite:///{folder / 'projects.db'}", plates)}
    print(json.dumps(results, indent=2), flush=True)
    try:
        server = start_server()
    except PostgresUnavailable as why:
        results["postgresql"] = {"skipped": str(why)}
    else:
        try:
            results["postgresql"] = run(new_database(server, "bench"), plates)
        finally:
            stop_server(server)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
