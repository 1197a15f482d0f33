"""``clibd boldigger``: a BOLDigger3-compatible identification table for any batch of barcodes, offline
from the local library (clibd_core/publish/boldigger.py)."""

from __future__ import annotations

import argparse
import sys

HITS = 25  # neighbours aligned per query: enough to count records above each threshold


def _boldigger(args: argparse.Namespace) -> int:
    from clibd_core.dna import BarcodeError
    from clibd_core.library.search import identify, queries_from
    from clibd_core.library.store import Library, LibraryError
    from clibd_core.models.clibd import load_model
    from clibd_core.publish.boldigger import write_boldigger
    from clibd_core.textio import read_text
    from clibd_core.workspace import Workspace

    try:
        library = Library.open(args.library or Workspace().active()[0])
        model = load_model(args.model or library.model_path)
        queries = queries_from(read_text(args.fasta))
        if not queries:
            raise ValueError(f"{args.fasta} holds no barcode")
        results = identify(library, model, queries, k=args.k)
        out = write_boldigger(results, library, args.out)
    except (LibraryError, BarcodeError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(results)} queries -> {out}")
    return 0


def add_commands(commands) -> None:
    tabler = commands.add_parser("boldigger", help="a BOLDigger3-compatible identification table (offline)")
    tabler.add_argument("--fasta", required=True, help="barcodes: FASTA or raw sequences")
    tabler.add_argument("--out", required=True, help="table: .csv, or .xlsx as BOLDigger writes")
    tabler.add_argument("--library", help="library directory (default: the active one, first the real BOLD library)")
    tabler.add_argument("--model", help="model directory (default: the library's own)")
    tabler.add_argument("--k", type=int, default=HITS, help=f"hits aligned per query (default {HITS})")
    tabler.set_defaults(run=_boldigger)
