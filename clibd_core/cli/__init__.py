"""The ``clibd`` command. Parsing imports nothing heavy, so ``clibd --help`` answers at once."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from clibd_core.cli.project import add_commands as project_commands
from clibd_core.cli.publish import add_commands as publish_commands
from clibd_core.library.dna_precision import PRECISIONS
from clibd_core.presets import preset_names

FORMATS = ("bold_tsv", "fasta", "bioscan_1m", "bioscan_5m", "clibd_hdf5", "image_folder", "species_folders")  # READERS


def _check_barcodes(args: argparse.Namespace) -> int:
    from clibd_core.dna import check_barcodes
    from clibd_core.textio import read_text

    text = sys.stdin.read() if args.source == "-" else read_text(args.source)
    reports = check_barcodes(text)
    for report in reports:
        if args.json:
            print(json.dumps({k: v for k, v in vars(report).items() if k != "sequence"}))
        elif report.ok:
            strand = "reverse-complemented" if report.reverse_complemented else "as given"
            print(f"{report.id}: {report.length} bp, {report.ambiguous_percent:.1f} % ambiguous, {strand}")
            for warning in report.warnings:
                print(f"  warning: {warning}")
        else:
            print(f"{report.id}: REJECTED: {report.error}")
    return 0 if all(report.ok for report in reports) else 1


def _import_checkpoint(args: argparse.Namespace) -> int:
    from clibd_core.models.official import CheckpointError, import_official_checkpoint

    try:
        out = import_official_checkpoint(args.checkpoint, args.out)
    except (CheckpointError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"imported {args.checkpoint} -> {out}")
    return 0


def _fetch_official(args: argparse.Namespace) -> int:
    from clibd_core.models.hub import fetch_official_model
    from clibd_core.models.official import CheckpointError

    try:
        out = fetch_official_model(args.release, args.out, progress=lambda message: print(message, file=sys.stderr))
    except (CheckpointError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"imported the official CLIBD model {args.release} -> {out}")
    return 0


def _embed(args: argparse.Namespace) -> int:
    import numpy as np

    from clibd_core.dna import check_barcodes
    from clibd_core.models.clibd import load_model
    from clibd_core.textio import read_text

    model = load_model(args.model)
    reports = check_barcodes(read_text(args.fasta))
    for report in reports:
        if not report.ok:
            print(f"skipped {report.error}", file=sys.stderr)
    good = [report for report in reports if report.ok]
    vectors = model.encode_barcodes([report.sequence for report in good])
    np.savez(args.out, ids=np.array([report.id for report in good]), embeddings=vectors)
    print(f"embedded {len(good)} of {len(reports)} barcodes -> {args.out}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from clibd_core.data.records import summarise
    from clibd_core.data.sources import SourceStream, UnknownFormatError
    from clibd_core.library.store import CURRENT

    if (Path(args.source) / CURRENT).is_file():
        return _inspect_library(Path(args.source), args.json)
    try:
        stream = SourceStream(args.source, args.format)  # read row by row: millions in bounded memory
        counted = summarise(tqdm(stream, desc="reading records", unit="record", leave=False), stream.skipped)
    except (UnknownFormatError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    summary = {"format": stream.format, "source": str(stream.path), **counted, "skipped_count": stream.skipped_count}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{summary['source']}: {summary['format']}")
    print(f"  records read   {summary['records']:,}")
    for key in ("orders", "families", "genera", "species"):
        print(f"  {key:<14} {summary[key]:,}")
    print(f"  with barcode   {summary['with_barcode']:,}")
    print(f"  with image     {summary['with_image']:,}")
    for split, count in summary["splits"].items():
        print(f"  split {split:<8} {count:,}")
    print(f"  skipped rows   {summary['skipped_count']:,}")
    for item in summary["skipped"]:
        print(f"    {item['row']}: {item['reason']}")
    if summary["skipped_count"] > len(summary["skipped"]):
        print(f"    ... and {summary['skipped_count'] - len(summary['skipped']):,} more")
    return 0


def _inspect_library(path: Path, as_json: bool) -> int:
    """A library's counts and the references its build found mislabelled (library/suspects.py)."""
    from clibd_core.library.store import Library

    library = Library.open(path, with_indexes=False)
    suspects = library.facts.get("suspect_labels", {"checked": 0, "reason": "built before the check existed"})
    if as_json:
        print(json.dumps({**library.summary(), "suspect_labels": suspects}, indent=2))
        return 0
    summary = library.summary()
    print(f"{path}: library {summary['version']}, {summary['records']:,} records, {summary['species_count']:,} species")
    precision = library.facts.get("build", {}).get("dna_precision")
    if precision:  # libraries built before the choice existed embedded in fp32
        print(f"  barcodes embedded in {precision['chosen']} ({precision['why']})")
    if not suspects.get("checked"):
        print(f"  labels not checked: {suspects.get('reason', '')}")
        return 0
    records = suspects["records"]
    print(f"  suspect labels {len(records):,} of {suspects['checked']:,} barcodes (not voted with)")
    for record in records:
        print(
            f"    {record['id']}: filed as {record['label']}, nearer {record['inside']} "
            f"({record['identity_inside']:.1f} % identity) than its own species ({record['identity_own']:.1f} %)"
        )
    return 0


def _train(args: argparse.Namespace) -> int:
    from clibd_core.train.config import load_config
    from clibd_core.train.loop import RunExistsError, train

    split = lambda text: [item.strip() for item in text.split(",") if item.strip()] if text else None  # noqa: E731
    learned = None
    if args.project:  # the project's verified records, written as a source, and remembered by the run
        from clibd_core.projects.db import ProjectError
        from clibd_core.projects.training import write_training_set

        if not args.verified:
            print("error: a project trains on its verified records only: add --verified", file=sys.stderr)
            return 2
        try:
            source, learned = write_training_set(args.project)
            args.data = str(source)
        except ProjectError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        args.modalities = args.modalities or ",".join(learned["modalities"])
        print(f"training on {learned['verified_specimens']} verified specimens of {args.project} ({args.data})")
    overrides = {
        "data": args.data,
        "val": args.val,
        "out": args.out,
        "preset": args.preset,
        "modalities": split(args.modalities),
        "init_from": args.init_from,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "freeze": split(args.freeze),
        "seed": args.seed,
        "num_workers": args.num_workers,
        "checkpoint_every": args.checkpoint_every,
        "max_steps": args.max_steps,
    }
    try:
        config = load_config(args.config, overrides)
        status = train(config, resume=args.resume)
    except (ValueError, RunExistsError, OSError) as error:  # OSError: e.g. a full disk at a checkpoint
        print(f"error: {error}", file=sys.stderr)
        return 2
    if learned is not None:
        from clibd_core.fileio import write_json

        for folder in (Path(config.out), Path(config.out) / "best"):
            if folder.is_dir():
                write_json(folder / "learned_from.json", learned)
    print(f"{status['state']} at step {status.get('step')} -> {config.out}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from clibd_core.data.synthetic import WorldConfig, generate_world

    if args.world_only:
        print(generate_world(args.out, WorldConfig(n_records=args.records or 1000, seed=args.seed)))
        return 0
    from clibd_core.demo import DEMO_WORLD, build_demo

    world = WorldConfig(**{**DEMO_WORLD.__dict__, "n_records": args.records or DEMO_WORLD.n_records, "seed": args.seed})
    report = build_demo(args.out, world, epochs=args.epochs)
    return 0 if report["targets"]["met"] else 1


def _progress_bars():
    """A Progress callback drawing one tqdm bar per stage on stderr."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:  # total 0: not known yet
        bar = bars.get(stage)
        if bar is None:
            for earlier in bars.values():  # a stage starts when the one before it has ended
                if not earlier.disable and earlier.total and earlier.n < earlier.total:
                    earlier.update(earlier.total - earlier.n)
                earlier.close()
            bar = bars[stage] = tqdm(total=total or None, desc=stage, unit="item", leave=True)
        bar.update(done - bar.n)
        if total and done >= total:
            bar.total = total
            bar.close()

    return progress


def _read_records(source: str, fmt: str | None):
    from clibd_core.data.sources import read_source

    result = read_source(source, fmt)
    report = _skipped_printer()
    for item in result.skipped:
        report(item)
    return result


def _skipped_printer(shown: int = 20):
    """Prints the first ``shown`` skipped rows, then once that more were skipped."""
    count = 0

    def report(item) -> None:
        nonlocal count
        count += 1
        if count <= shown:
            print(f"skipped {item.row}: {item.reason}", file=sys.stderr)
        elif count == shown + 1:
            print("... and more skipped rows (clibd inspect lists them all)", file=sys.stderr)

    return report


def _library_model(library, model_dir: str | None, towers: tuple[str, ...] | None = None):
    """The model a library was built with (its recorded path), or the one named; ``towers``: only those."""
    from clibd_core.models.clibd import load_model

    path = model_dir or library.model_path
    if not path or not Path(path).is_dir():
        raise FileNotFoundError(f"the library's model ({path or 'not recorded'}) is not here: pass --model")
    return load_model(path, towers=towers)


def _build_library(args: argparse.Namespace) -> int:
    import torch
    from accelerate import PartialState

    from clibd_core.data.sources import SourceStream, UnknownFormatError
    from clibd_core.library.build import build_library
    from clibd_core.library.build_status import StatusWriter
    from clibd_core.library.store import LibraryError
    from clibd_core.models.clibd import load_model

    # One process, or those `accelerate launch` started (GPUs, or CPU processes where there is no GPU).
    processes = PartialState(cpu=not torch.cuda.is_available())
    progress = _progress_bars() if processes.is_main_process else lambda *_: None
    status = StatusWriter(args.status, also=progress) if args.status and processes.is_main_process else None
    try:
        model = load_model(args.model, device=processes.device)
        # Read as a stream by the main process only: a source of millions is never held whole.
        stream = SourceStream(args.data, args.format, on_skipped=_skipped_printer())
        library = build_library(
            model,
            stream,
            args.out,
            sources=lambda: [stream.facts()],
            name=args.name,
            overwrite=args.overwrite,
            progress=status or progress,
            batch_size=args.batch_size,
            processes=processes,
            shard_records=args.shard_records,
            index_memory=int(args.index_memory * 2**30),
            dna_precision=args.dna_precision,
        )
    except (LibraryError, UnknownFormatError, OSError, ValueError) as error:
        if status:
            status.write("failed", error=str(error))
        print(f"error: {error}", file=sys.stderr)
        return 2
    if library is not None:  # the main process commits and reports
        if status:
            status.write("finished", library=str(library.path), records=len(library.metadata))
        print(json.dumps(library.summary(), indent=2))
    return 0


def _add_to_library(args: argparse.Namespace) -> int:
    from clibd_core.data.sources import UnknownFormatError, source_facts
    from clibd_core.library.build import add_to_library
    from clibd_core.library.store import Library, LibraryError

    try:
        model = _library_model(Library.open(args.library), args.model)
        result = _read_records(args.data, args.format)
        library, duplicates = add_to_library(
            args.library, model, result.records, sources=[source_facts(result)], progress=_progress_bars()
        )
    except (LibraryError, UnknownFormatError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if duplicates:
        print(f"left out {len(duplicates)} records already in the library (e.g. {duplicates[0]})", file=sys.stderr)
    print(json.dumps(library.summary(), indent=2))
    return 0


def _identify(args: argparse.Namespace) -> int:
    from clibd_core.answering import identify_with_photo_fallback
    from clibd_core.data.uploads import IMAGE_SUFFIXES
    from clibd_core.library.results import write_bundle
    from clibd_core.library.search import photo_way_forward, queries_from
    from clibd_core.library.store import Library, LibraryError
    from clibd_core.textio import read_text
    from clibd_core.workspace import Workspace

    try:
        library = Library.open(args.library or _active_library())
        images = [p for path in args.images or [] for p in _image_files(Path(path), IMAGE_SUFFIXES)]
        model = _library_model(library, args.model, towers=None if images else ("dna",))  # barcodes: the DNA tower
        fasta = read_text(args.fasta) if args.fasta else ""
        queries = queries_from(fasta, images)
        if not queries:
            raise ValueError("nothing to identify: give --fasta and/or --images")
        answered = identify_with_photo_fallback(
            library,
            model,
            queries,
            Workspace(),
            k=args.k,
            image_keys=args.image_keys,
            taxon=args.taxon,
            country=args.country,
            progress=_progress_bars(),
        )
        results = answered.results
        written = write_bundle(results, args.out, library, model)
    except (LibraryError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = sum(bool(r.error) for r in results)
    for note in answered.notes:
        print(note, file=sys.stderr)
    if answered.photos_refused:
        print(f"photos not named: {photo_way_forward(library.name)}", file=sys.stderr)
    print(f"identified {len(results) - failed} of {len(results)} queries -> {', '.join(map(str, written))}")
    return 0


def _active_library() -> Path:
    """The library the app opens: the active pair of $CLIBD_HOME, else the embedded real BOLD library."""
    from clibd_core.workspace import Workspace

    library, _ = Workspace().active()
    print(f"library: {library}", file=sys.stderr)
    return library


def _build_default(args: argparse.Namespace) -> int:
    from clibd_core.reference import DEFAULT_LIBRARY, build_default_library, default_library_is_current

    if not args.force and default_library_is_current():
        print(f"the default library is built: {DEFAULT_LIBRARY}")
        return 0
    print("building the default library: real BOLD insect barcodes (once per machine, a few minutes)")
    print(json.dumps(_summary(build_default_library(_progress_bars())), indent=2))
    return 0


def _serve(args: argparse.Namespace) -> int:
    """The same app as ``python app.py``, after building the default library if this machine lacks it."""
    if _build_default(argparse.Namespace(force=False)):
        return 1
    os.environ["CLIBD_HOST"], os.environ["CLIBD_PORT"] = args.host, str(args.port)
    from clibd_core.ui.server import main as serve

    serve()
    return 0


def _recalibrate(args: argparse.Namespace) -> int:
    from clibd_core.library.build import recalibrate
    from clibd_core.library.store import Library, LibraryError

    try:
        model = _library_model(Library.open(args.library), args.model)
        library = recalibrate(args.library, model, progress=_progress_bars())
    except (LibraryError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(library.facts["calibration"].get("dna->dna", library.facts["calibration"]), indent=2)[:2000])
    return 0


def _attached(library: str, given, attach, summarise, what: str, none: str) -> tuple[int, dict | None]:
    """(exit code, summary) of a library's ``what`` (its checklist or BIN registry) once ``given`` is
    attached, or as it stands without ``given``; no summary where there is none (``none`` is said) or it
    could not be attached (the error is said)."""
    from clibd_core.library.store import Library, LibraryError

    try:
        summary = attach(library, given) if given else summarise(Library.open(library, with_indexes=False))
    except (LibraryError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2, None
    if summary[what] is None:
        print(none)
        return 0, None
    return 0, summary


def _checklist(args: argparse.Namespace) -> int:
    from clibd_core.library.coverage import attach_checklist, coverage_summary

    none = f"{args.library} has no checklist: give one (clibd checklist {args.library} CHECKLIST.csv)"
    code, summary = _attached(args.library, args.file, attach_checklist, coverage_summary, "checklist", none)
    if summary is None:
        return code
    partial = {genus: g for genus, g in summary["genera"].items() if g["held"] < g["expected"]}
    print(
        f"checklist {summary['checklist']}: {summary['species_held']:,} of {summary['species_expected']:,} species "
        f"held; {summary['genera_complete']:,} of {summary['genera_expected']:,} genera complete. Species of the "
        f"{len(partial):,} genera held in part are not named (a missing relative may share the barcode):"
    )
    for genus, g in list(partial.items())[:30]:
        print(f"  {genus}: {g['held']} of {g['expected']}")
    return 0


def _bins(args: argparse.Namespace) -> int:
    from clibd_core.library.coverage import attach_bin_registry, registry_summary

    none = f"{args.library} has no BIN registry: give one (clibd bins {args.library} BOLD_EXPORT.tsv …)"
    code, summary = _attached(args.library, args.exports, attach_bin_registry, registry_summary, "registry", none)
    if summary is None:
        return code
    print(
        f"BIN registry from {', '.join(summary['registry'])}: {summary['bins']:,} BINs, {summary['shared_bins']:,} "
        f"shared by several names. {summary['library_bins_with_names_elsewhere']:,} of this library's BINs also "
        "carry names it does not hold; a species of such a BIN is named only where it holds 95 % of its records:"
    )
    for bin_name, names in summary["examples"].items():
        print(f"  {bin_name}: {', '.join(names)}")
    return 0


def _add_user(args: argparse.Namespace) -> int:
    import getpass

    from clibd_core.access import AccessError, add_user

    password = (
        sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass(f"password for {args.name}: ")
    )
    try:
        add_user(args.users, args.name, password)
    except AccessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.name} can log in (serve with CLIBD_USERS={args.users})")
    return 0


def _add_token(args: argparse.Namespace) -> int:
    from clibd_core.access import AccessError, add_token

    try:
        token = add_token(args.users, args.name)
    except AccessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(token)
    print(f"the JSON API token of {args.name} (shown once; send it as 'Authorization: Bearer TOKEN')", file=sys.stderr)
    return 0


def _summary(path: Path) -> dict:
    from clibd_core.library.store import Library

    summary = Library.open(path, with_indexes=False).summary()
    return {key: summary[key] for key in ("name", "path", "version", "records", "species_count", "orders")}


def _image_files(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes)
    if not path.exists():
        raise FileNotFoundError(f"image '{path}' does not exist")
    return [path]


def _evaluate(args: argparse.Namespace) -> int:
    from clibd_core.data.sources import UnknownFormatError
    from clibd_core.data.splits import assign_splits
    from clibd_core.evaluate import evaluate_model, markdown_report
    from clibd_core.fileio import write_json
    from clibd_core.models.clibd import load_model

    try:
        model = load_model(args.model)
        records = _read_records(args.data, args.format).records
    except (UnknownFormatError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.split_seed is not None or not any(r.split for r in records):
        assign_splits(records, seed=args.split_seed or 0)
    report = evaluate_model(model, records, args.stage)
    write_json(args.out, report)
    markdown = markdown_report(report)
    Path(args.out).with_suffix(".md").write_text(markdown)
    print(markdown)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clibd", description="Identify insects from images and DNA barcodes (CLIBD).")
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check-barcodes", help="clean, orient and quality-flag barcodes (raw or FASTA)")
    check.add_argument("source", help="a FASTA or raw-sequence file, or - for standard input")
    check.add_argument("--json", action="store_true", help="one JSON object per record")
    check.set_defaults(run=_check_barcodes)

    inspect = commands.add_parser(
        "inspect", help="show what a data source holds and which rows would be skipped, or a library's suspect labels"
    )
    inspect.add_argument(
        "source", help="BOLD TSV, FASTA, BIOSCAN-1M/5M metadata or folder, CLIBD HDF5, images CSV; or a library"
    )
    inspect.add_argument("--format", choices=FORMATS, help="skip detection and read as this format")
    inspect.add_argument("--json", action="store_true", help="one JSON object")
    inspect.set_defaults(run=_inspect)

    trainer = commands.add_parser("train", help="contrastive training / fine-tuning (CPU, GPU, accelerate launch)")
    trainer.add_argument("--config", help="YAML or JSON file with any of the settings below (flags win)")
    trainer.add_argument("--data", help="training source (any format `clibd inspect` reads)")
    trainer.add_argument("--val", help="validation source (default: the data's own val splits)")
    trainer.add_argument("--out", help="run directory (metrics.jsonl, status.json, last/, best/)")
    trainer.add_argument("--preset", choices=preset_names())
    trainer.add_argument("--modalities", help="two or three of image,dna,text (comma-separated)")
    trainer.add_argument("--init-from", help="model directory to fine-tune")
    trainer.add_argument("--epochs", type=int)
    trainer.add_argument("--batch-size", type=int, help="global batch size")
    trainer.add_argument("--lr", type=float, help="peak learning rate")
    trainer.add_argument("--freeze", help="image_backbone,text_backbone (comma-separated)")
    trainer.add_argument("--seed", type=int)
    trainer.add_argument("--num-workers", type=int)
    trainer.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    trainer.add_argument("--max-steps", type=int)
    trainer.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    trainer.add_argument("--project", help="train on a project's records (with --verified: those a person verified)")
    trainer.add_argument("--verified", action="store_true", help="with --project: its verified records only")
    trainer.set_defaults(run=_train)

    demo = commands.add_parser("demo", help="build the embedded default: synthetic world, lite model, demo library")
    demo.add_argument("--out", default="reference_db/demo", help="where to write (default: reference_db/demo)")
    demo.add_argument("--records", type=int, default=None, help="records in the synthetic world")
    demo.add_argument("--epochs", type=int, default=30)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--world-only", action="store_true", help="only write the synthetic world (BIOSCAN-5M layout)")
    demo.set_defaults(run=_demo)

    importer = commands.add_parser("import-checkpoint", help="turn an official CLIBD best.pth into a model directory")
    importer.add_argument("checkpoint", help="the released best.pth")
    importer.add_argument("out", help="model directory to write")
    importer.set_defaults(run=_import_checkpoint)

    fetcher = commands.add_parser(
        "fetch-official", help="download an official CLIBD checkpoint from Hugging Face and import it"
    )
    fetcher.add_argument("out", help="model directory to write")
    fetcher.add_argument(
        "--release", default="bioscan_5m/image_dna_text", help="dataset/towers, e.g. bioscan_1m/image_dna"
    )
    fetcher.set_defaults(run=_fetch_official)

    builder = commands.add_parser(
        "build-library",
        help="embed a data source into a new reference library (any number of processes: accelerate launch … "
        "-m clibd_core.cli build-library …; a killed build resumes)",
    )
    builder.add_argument("--model", required=True, help="model or run directory")
    builder.add_argument("--data", required=True, help="any source `clibd inspect` reads")
    builder.add_argument("--format", choices=FORMATS, help="skip detection and read as this format")
    builder.add_argument("--out", required=True, help="library directory to create")
    builder.add_argument("--name", help="a name shown in the app (default: the directory name)")
    builder.add_argument("--overwrite", action="store_true", help="replace an existing library (atomically)")
    builder.add_argument("--batch-size", type=int, default=64, help="records embedded at once per process")
    builder.add_argument(
        "--index-memory",
        type=float,
        default=4.0,
        help="GB of memory one modality's search index may hold; beyond it, a compressed memory-mapped index",
    )
    builder.add_argument(
        "--shard-records", type=int, default=4096, help="records per shard (the unit written, shared out, resumed)"
    )
    builder.add_argument(
        "--dna-precision",
        choices=("auto", *PRECISIONS),
        default="auto",
        help="the DNA tower's number format; auto: on a CPU build of 10,000 barcodes or more, the fastest of "
        "fp32/bf16/int8 that keeps fp32's neighbours on a probe of the build's own barcodes (else fp32)",
    )
    builder.add_argument("--status", help="also record progress (stage, count, elapsed, ETA) in this JSON file")
    builder.set_defaults(run=_build_library)

    adder = commands.add_parser("add-to-library", help="append a data source to a library (atomically)")
    adder.add_argument("library", help="library directory")
    adder.add_argument("--data", required=True)
    adder.add_argument("--format", choices=FORMATS)
    adder.add_argument("--model", help="model directory (default: the one the library records)")
    adder.set_defaults(run=_add_to_library)

    identifier = commands.add_parser("identify", help="identify barcodes and/or images against a library")
    identifier.add_argument(
        "--library", help="library directory (default: the app's active one, first the real BOLD library)"
    )
    identifier.add_argument("--model", help="model or run directory (default: the one the library records)")
    identifier.add_argument("--fasta", help="barcodes: FASTA or raw sequences")
    identifier.add_argument(
        "--images",
        nargs="+",
        help="image files or folders (an image whose file name is a "
        "FASTA id is combined with that barcode as one specimen)",
    )
    identifier.add_argument("--k", type=int, default=10, help="neighbours that vote (default 10)")
    identifier.add_argument("--taxon", help="only references of this taxon (any rank), e.g. Diptera")
    identifier.add_argument("--country", help="only references from this country")
    identifier.add_argument(
        "--image-keys",
        choices=("auto", "image", "dna"),
        default="auto",
        help="match images against the library's images or its barcodes (auto: images if any)",
    )
    identifier.add_argument(
        "--out",
        required=True,
        help="results CSV or .parquet (neighbours go to *.neighbours.*, query embeddings to *.embeddings.parquet)",
    )
    identifier.set_defaults(run=_identify)

    evaluator = commands.add_parser("evaluate", help="the paper's protocol (+ novelty AUROC) for a model on data")
    evaluator.add_argument("--model", required=True)
    evaluator.add_argument("--data", required=True)
    evaluator.add_argument("--format", choices=FORMATS)
    evaluator.add_argument("--stage", choices=("test", "val"), default="test")
    evaluator.add_argument("--split-seed", type=int, help="re-split with this seed (default: the data's splits)")
    evaluator.add_argument("--out", required=True, help="report JSON (a Markdown table is written beside it)")
    evaluator.set_defaults(run=_evaluate)

    default = commands.add_parser(
        "build-default", help="build the embedded real BOLD barcode library (make run / make test do it once)"
    )
    default.add_argument("--force", action="store_true", help="rebuild even if it is current")
    default.set_defaults(run=_build_default)

    recalibrator = commands.add_parser(
        "recalibrate", help="refit a library's confidence calibration and domain (no re-embedding)"
    )
    recalibrator.add_argument("library", help="library directory")
    recalibrator.add_argument("--model", help="model directory (default: the one the library records)")
    recalibrator.set_defaults(run=_recalibrate)

    checklist = commands.add_parser(
        "checklist", help="attach a checklist of the species expected to a library, or show its coverage"
    )
    checklist.add_argument("library", help="library directory")
    checklist.add_argument("file", nargs="?", help="CSV/TSV with a species or scientificName column (GBIF export)")
    checklist.set_defaults(run=_checklist)
    bins = commands.add_parser(
        "bins", help="attach the BINs of wider BOLD exports to a library (names its BINs carry elsewhere), or show them"
    )
    bins.add_argument("library", help="library directory")
    bins.add_argument("exports", nargs="*", help="BOLD TSV exports (plain or gzip) whose BINs and species to know")
    bins.set_defaults(run=_bins)

    server = commands.add_parser("serve", help="start the app (as python app.py); beyond loopback it needs logins")
    server.add_argument("--host", default=os.environ.get("CLIBD_HOST", "127.0.0.1"), help="0.0.0.0: the lab network")
    server.add_argument("--port", type=int, default=int(os.environ.get("CLIBD_PORT", "7860")))
    server.set_defaults(run=_serve)

    users = commands.add_parser("add-user", help="add a login for a served app (the password is stored hashed)")
    users.add_argument("users", help="the users file (created if absent); serve with CLIBD_USERS=FILE")
    users.add_argument("name")
    users.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    users.set_defaults(run=_add_user)

    tokens = commands.add_parser("add-token", help="a new JSON API token for a user (printed once, stored hashed)")
    tokens.add_argument("users", help="the users file (created if absent)")
    tokens.add_argument("name")
    tokens.set_defaults(run=_add_token)

    embed = commands.add_parser("embed", help="embed the barcodes of a FASTA file with a model directory")
    embed.add_argument("--model", required=True)
    embed.add_argument("--fasta", required=True)
    embed.add_argument("--out", required=True, help=".npz file with ids and embeddings")
    embed.set_defaults(run=_embed)
    project_commands(commands)
    publish_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
