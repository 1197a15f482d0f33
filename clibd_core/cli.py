"""The ``clibd`` command. Parsing imports nothing heavy, so ``clibd --help`` answers at once."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

FORMATS = ("bold_tsv", "fasta", "bioscan_1m", "bioscan_5m", "clibd_hdf5", "image_folder")  # data.sources.READERS


def _check_barcodes(args: argparse.Namespace) -> int:
    from clibd_core.dna import check_barcodes

    text = sys.stdin.read() if args.source == "-" else Path(args.source).read_text(errors="replace")
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


def _embed(args: argparse.Namespace) -> int:
    import numpy as np

    from clibd_core.dna import check_barcodes
    from clibd_core.models.clibd import load_model

    model = load_model(args.model)
    reports = check_barcodes(Path(args.fasta).read_text(errors="replace"))
    for report in reports:
        if not report.ok:
            print(f"skipped {report.error}", file=sys.stderr)
    good = [report for report in reports if report.ok]
    vectors = model.encode_barcodes([report.sequence for report in good])
    np.savez(args.out, ids=np.array([report.id for report in good]), embeddings=vectors)
    print(f"embedded {len(good)} of {len(reports)} barcodes -> {args.out}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from clibd_core.data.sources import UnknownFormatError, read_source

    try:
        summary = read_source(args.source, args.format).summary()
    except (UnknownFormatError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
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
    print(f"  skipped rows   {len(summary['skipped']):,}")
    for item in summary["skipped"]:
        print(f"    {item['row']}: {item['reason']}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from clibd_core.train.config import load_config
    from clibd_core.train.loop import RunExistsError, train

    split = lambda text: [item.strip() for item in text.split(",") if item.strip()] if text else None  # noqa: E731
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
    except (ValueError, RunExistsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clibd", description="Identify insects from images and DNA barcodes (CLIBD).")
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check-barcodes", help="clean, orient and quality-flag barcodes (raw or FASTA)")
    check.add_argument("source", help="a FASTA or raw-sequence file, or - for standard input")
    check.add_argument("--json", action="store_true", help="one JSON object per record")
    check.set_defaults(run=_check_barcodes)

    inspect = commands.add_parser("inspect", help="show what a data source holds and which rows would be skipped")
    inspect.add_argument("source", help="BOLD TSV, FASTA, BIOSCAN-1M/5M metadata or folder, CLIBD HDF5, images CSV")
    inspect.add_argument("--format", choices=FORMATS, help="skip detection and read as this format")
    inspect.add_argument("--json", action="store_true", help="one JSON object")
    inspect.set_defaults(run=_inspect)

    trainer = commands.add_parser("train", help="contrastive training / fine-tuning (CPU, GPU, accelerate launch)")
    trainer.add_argument("--config", help="YAML or JSON file with any of the settings below (flags win)")
    trainer.add_argument("--data", help="training source (any format `clibd inspect` reads)")
    trainer.add_argument("--val", help="validation source (default: the data's own val splits)")
    trainer.add_argument("--out", help="run directory (metrics.jsonl, status.json, last/, best/)")
    trainer.add_argument("--preset", choices=("lite", "paper"))
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
    trainer.set_defaults(run=_train)

    demo = commands.add_parser("demo", help="build the embedded default: synthetic world, lite model, demo library")
    demo.add_argument("--out", default="reference_db", help="where to write (default: reference_db)")
    demo.add_argument("--records", type=int, default=None, help="records in the synthetic world")
    demo.add_argument("--epochs", type=int, default=30)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--world-only", action="store_true", help="only write the synthetic world (BIOSCAN-5M layout)")
    demo.set_defaults(run=_demo)

    importer = commands.add_parser("import-checkpoint", help="turn an official CLIBD best.pth into a model directory")
    importer.add_argument("checkpoint", help="the released best.pth")
    importer.add_argument("out", help="model directory to write")
    importer.set_defaults(run=_import_checkpoint)

    embed = commands.add_parser("embed", help="embed the barcodes of a FASTA file with a model directory")
    embed.add_argument("--model", required=True)
    embed.add_argument("--fasta", required=True)
    embed.add_argument("--out", required=True, help=".npz file with ids and embeddings")
    embed.set_defaults(run=_embed)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
