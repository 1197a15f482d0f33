"""``clibd project …``: field projects from the command line, on the same functions as the app's
Projects and Review tabs (clibd_core/projects/)."""

from __future__ import annotations

import argparse
import json
import sys

ACTIONS = ("agree", "not_identifiable", "withdraw")
CHOOSE = "say what you decide: --agree, --taxon NAME [--rank RANK], --not-identifiable or --withdraw"


def _fail(error: Exception) -> int:
    print(f"error: {error}", file=sys.stderr)
    return 2


def _create(args: argparse.Namespace) -> int:
    from clibd_core.projects.db import ProjectError, session_scope
    from clibd_core.projects.registry import create_project

    watch = [t.strip() for t in (args.watch or "").split(",") if t.strip()]
    try:
        with session_scope() as session:
            create_project(session, args.project, title=args.title or "", watch=watch)
    except ProjectError as error:
        return _fail(error)
    print(f"created project {args.project}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from clibd_core.projects.db import ProjectError
    from clibd_core.projects.intake import ImportRefused, import_files
    from clibd_core.projects.sheets import SheetError

    try:
        plan = import_files(args.project, args.sheet, args.files, skip_unmatched=args.skip_unmatched,
                            check_only=args.check)  # fmt: skip
    except ImportRefused as refused:
        if args.json:
            print(json.dumps({**refused.plan.summary(), "written": False}, indent=2))
        print(str(refused), file=sys.stderr)
        return 1
    except (ProjectError, SheetError, OSError) as error:
        return _fail(error)
    if args.json:
        print(json.dumps({**plan.summary(), "written": not args.check}, indent=2))
    else:
        print(plan.report())
        print("checked: nothing written (--check)" if args.check else "imported")
    return 0


def _identify(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from clibd_core.library.store import LibraryError
    from clibd_core.projects.db import ProjectError
    from clibd_core.projects.identify import identify_project

    bar = tqdm(desc="identifying specimens", unit="specimen", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        summary = identify_project(args.project, args.library, args.model, progress=progress, batch=args.batch)
    except (ProjectError, LibraryError, OSError) as error:
        return _fail(error)
    finally:
        bar.close()
    print(json.dumps(summary, indent=2) if args.json else _identify_report(summary))
    return 0


def _identify_report(summary: dict) -> str:
    lines = [
        f"{summary['project']}: identified {summary['identified']} of {summary['to_identify']} specimens not yet "
        f"identified by {summary['library']} ({summary['state']})"
    ]
    return "\n".join([*lines, *(f"  left out  {item}" for item in summary["left_out"])])


def _status(args: argparse.Namespace) -> int:
    from clibd_core.projects.db import ProjectError, session_scope
    from clibd_core.projects.registry import get_project
    from clibd_core.projects.review import project_status

    try:
        with session_scope() as session:
            status = project_status(session, get_project(session, args.project))
    except ProjectError as error:
        return _fail(error)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    for key, value in status.items():
        if key != "agreement":
            print(f"{key:<18} {value}")
    for rank, counts in status["agreement"].items():
        rate = "–" if counts["rate"] is None else f"{100 * counts['rate']:.1f} %"
        print(f"agreement {rank:<8} {rate} of {counts['compared']} verified")
    return 0


def _review(args: argparse.Namespace) -> int:
    from clibd_core.library.store import Library, LibraryError
    from clibd_core.projects.db import ProjectError
    from clibd_core.projects.review import TaxonIndex, local_reviewer, review_specimen
    from clibd_core.workspace import Workspace

    action = "correct" if args.taxon else next((a for a in ACTIONS if getattr(args, a)), None)
    if action is None:
        return _fail(ValueError(CHOOSE))
    try:
        taxa = None
        if action == "correct":
            library = Library.open(args.library or Workspace().active()[0], with_indexes=False)
            taxa = TaxonIndex(library)
        view = review_specimen(args.project, args.specimen, args.by or local_reviewer(), action, args.taxon,
                               args.rank, args.remarks or "", taxa=taxa)  # fmt: skip
    except (ProjectError, LibraryError) as error:
        return _fail(error)
    determination = view["determination"] or {}
    named = f"{determination.get('rank', '')} {determination.get('taxon', '')}".strip() or "no name"
    print(f"{view['sample_id']}: {view['status']} ({named})")
    return 0


def _queue(args: argparse.Namespace) -> int:
    from clibd_core.projects.db import ProjectError, session_scope
    from clibd_core.projects.registry import get_project
    from clibd_core.projects.review import review_queue

    try:
        with session_scope() as session:
            items = review_queue(session, get_project(session, args.project), args.limit)
    except ProjectError as error:
        return _fail(error)
    for item in items:
        print(f"{item['sample_id']}\t{item['determination']}\t{'; '.join(item['reasons'])}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from clibd_core.projects.db import ProjectError, session_scope
    from clibd_core.projects.registry import get_project
    from clibd_core.projects.review import get_specimen, specimen_view

    try:
        with session_scope() as session:
            view = specimen_view(get_specimen(session, get_project(session, args.project), args.specimen))
    except ProjectError as error:
        return _fail(error)
    print(json.dumps(view, indent=2, default=str))
    return 0


def _list(args: argparse.Namespace) -> int:
    from clibd_core.projects.db import ProjectError, session_scope
    from clibd_core.projects.registry import list_projects

    try:
        with session_scope() as session:
            projects = list_projects(session)
    except ProjectError as error:
        return _fail(error)
    if args.json:
        print(json.dumps(projects, indent=2))
    for project in [] if args.json else projects:
        print(f"{project['name']}\t{project['specimens']} specimens\t{project['title']}")
    return 0


def _set(args: argparse.Namespace) -> int:
    from clibd_core.projects.db import ProjectError, session_scope
    from clibd_core.projects.registry import get_project, set_watch_list
    from clibd_core.publish.dwca import licence_url

    try:
        with session_scope() as session:
            project = get_project(session, args.project)
            if args.licence:
                licence_url(args.licence)  # refused here, not at the first export
                project.licence = args.licence
            for name in ("title", "description"):
                if getattr(args, name) is not None:
                    setattr(project, name, getattr(args, name))
            given = {k: getattr(args, f"contact_{k}") for k in ("name", "email", "organisation")}
            project.contact = {**(project.contact or {}), **{k: v for k, v in given.items() if v is not None}}
            if args.watch is not None:
                set_watch_list(project, [t.strip() for t in args.watch.split(",")])
    except ProjectError as error:
        return _fail(error)
    print(f"updated project {args.project}")
    return 0


def _import_trap(args: argparse.Namespace) -> int:
    from clibd_core.projects.db import ProjectError
    from clibd_core.projects.intake import ImportRefused
    from clibd_core.projects.sheets import SheetError
    from clibd_core.projects.trap import import_trap

    try:
        plan = import_trap(args.project, args.folder, args.deployment, args.gap_hours, check_only=args.check)
    except ImportRefused as refused:
        print(str(refused), file=sys.stderr)
        return 1
    except (ProjectError, SheetError, OSError) as error:
        return _fail(error)
    events = len({str(d.values.get("event_date")) + str(d.values.get("event_time")) for d in plan.specimens})
    print(f"{plan.report()}\n{events} events" + (" (checked: nothing written)" if args.check else ""))
    return 0


def _import_bulk(args: argparse.Namespace) -> int:
    from clibd_core.projects.bulk import import_bulk
    from clibd_core.projects.db import ProjectError

    try:
        summary = import_bulk(args.project, args.table, args.fasta)
    except (ProjectError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


def _export(args: argparse.Namespace) -> int:
    from clibd_core.library.store import LibraryError
    from clibd_core.projects.db import ProjectError
    from clibd_core.publish.bold import write_bold_workbook
    from clibd_core.publish.boldigger import write_project_boldigger
    from clibd_core.publish.dwca import write_dwca

    try:
        if args.format == "bold-xlsx":
            print(json.dumps(write_bold_workbook(args.project, args.out)))
            return 0
        if args.format == "boldigger":
            print(json.dumps(write_project_boldigger(args.project, args.out, args.library)))
            return 0
        if args.format == "bulk":
            from clibd_core.projects.bulk import write_bulk_table

            print(json.dumps(write_bulk_table(args.project, args.out, args.library)))
            return 0
        report = write_dwca(args.project, args.out, verified_only=not args.all)
    except (ProjectError, LibraryError, OSError) as error:
        return _fail(error)
    summary = report.summary()
    print(json.dumps(summary, indent=2) if args.json else
          f"wrote {summary['archive']}: {summary['occurrences']} occurrences, {summary['dna_sequences']} sequences, "
          f"{summary['identifications']} identifications; left out {summary['left_out']}: "
          + ", ".join(f"{n} {why}" for why, n in summary["left_out_by_reason"].items()))  # fmt: skip
    return 0


def add_commands(commands) -> None:
    """The ``project`` command group (database: ``CLIBD_DATABASE``, else the workspace's SQLite file)."""
    group = commands.add_parser("project", help="field projects: specimens, identifications, review (a database)")
    sub = group.add_subparsers(dest="project_command", required=True)

    create = sub.add_parser("create", help="a new project in the workspace's database (or CLIBD_DATABASE)")
    create.add_argument("project")
    create.add_argument("--title")
    create.add_argument("--watch", help="taxa every identification of which a person must see (comma-separated)")
    create.set_defaults(run=_create)

    importer = sub.add_parser("import", help="a sample sheet (CSV/XLSX) and FASTA / BOLD TSV / photos / zips / folders")
    importer.add_argument("project")
    importer.add_argument("sheet", help="the sample sheet (or, for known specimens, a first barcode or photo file)")
    importer.add_argument("files", nargs="*", help="barcodes, photos, zips, folders, plate maps")
    importer.add_argument("--skip-unmatched", action="store_true", help="import the rest when files match no specimen")
    importer.add_argument("--check", action="store_true", help="report only: write nothing")
    importer.add_argument("--json", action="store_true")
    importer.set_defaults(run=_import)

    trap = sub.add_parser("import-trap", help="a trap's photos: a specimen each, events by the time between photos")
    trap.add_argument("project")
    trap.add_argument("folder", help="the photos (nightly sub-folders or time-stamped files)")
    trap.add_argument("--deployment", help="the deployment's field sheet (CSV: site, Lat, Lon, method, ...)")
    trap.add_argument("--gap-hours", type=float, default=3.0, help="a new event after a gap this long")
    trap.add_argument("--check", action="store_true", help="report only: write nothing")
    trap.set_defaults(run=_import_trap)

    bulk = sub.add_parser("import-bulk", help="an ESV/OTU × sample table of read counts (metabarcoding)")
    bulk.add_argument("project")
    bulk.add_argument("table", help="APSCALE-style ESV table, MetaWorks results.csv, or a counts table")
    bulk.add_argument("fasta", nargs="?", help="the ESVs' sequences, when the table has none")
    bulk.set_defaults(run=_import_bulk)

    identifier = sub.add_parser("identify", help="every specimen not yet identified by the active library and model")
    identifier.add_argument("project")
    identifier.add_argument("--library", help="library directory (default: the active one)")
    identifier.add_argument("--model", help="model directory (default: the active one)")
    identifier.add_argument("--batch", type=int, default=256, help="specimens stored per transaction")
    identifier.add_argument("--json", action="store_true")
    identifier.set_defaults(run=_identify)

    status = sub.add_parser("status", help="specimens, identified, verified, needing review, agreement per rank")
    status.add_argument("project")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=_status)

    reviewer = sub.add_parser("review", help="a person's identification of one specimen")
    reviewer.add_argument("project")
    reviewer.add_argument("specimen", help="the sample id")
    decision = reviewer.add_mutually_exclusive_group()
    decision.add_argument("--agree", action="store_true", help="agree with the current determination")
    decision.add_argument("--taxon", help="correct it: a name of the library's taxonomy, at any rank")
    decision.add_argument("--not-identifiable", dest="not_identifiable", action="store_true")
    decision.add_argument("--withdraw", action="store_true", help="withdraw your own standing identification")
    reviewer.add_argument("--rank", choices=("order", "family", "genus", "species"))
    reviewer.add_argument("--remarks")
    reviewer.add_argument("--by", help="the reviewer (default: CLIBD_REVIEWER, the workspace's name, your login)")
    reviewer.add_argument("--library", help="whose taxonomy a correction is checked against (default: active)")
    reviewer.set_defaults(run=_review)

    queue = sub.add_parser("queue", help="what most needs a person, first first")
    queue.add_argument("project")
    queue.add_argument("--limit", type=int, default=20)
    queue.set_defaults(run=_queue)

    show = sub.add_parser("show", help="one specimen: field data, evidence, every identification (JSON)")
    show.add_argument("project")
    show.add_argument("specimen")
    show.set_defaults(run=_show)

    setter = sub.add_parser("set", help="a project's dataset fields (for publishing) and watch list")
    setter.add_argument("project")
    setter.add_argument("--title")
    setter.add_argument("--description")
    setter.add_argument("--licence", help="CC0, CC-BY or CC-BY-NC (the licences GBIF accepts)")
    setter.add_argument("--contact-name")
    setter.add_argument("--contact-email")
    setter.add_argument("--contact-organisation")
    setter.add_argument("--watch", help="the watch list: taxa, comma-separated (replaces it)")
    setter.set_defaults(run=_set)

    exporter = sub.add_parser("export", help="GBIF's Darwin Core Archive, or BOLD's specimen-data workbook")
    exporter.add_argument("project")
    exporter.add_argument("--out", required=True, help="the archive (.zip), workbook (.xlsx) or table")
    exporter.add_argument("--format", choices=("dwca", "bold-xlsx", "boldigger", "bulk"), default="dwca",
                          help="dwca: GBIF's Darwin Core Archive; bold-xlsx: BOLD's submission workbook; "
                          "boldigger: BOLDigger3 (.xlsx/.csv/.parquet); bulk: sample × taxon reads")  # fmt: skip
    exporter.add_argument("--verified-only", action="store_true", help="dwca: only verified specimens (default)")
    exporter.add_argument("--library", help="boldigger, bulk: the library to name against (default: active)")
    exporter.add_argument("--all", action="store_true", help="every named specimen, not only those a person verified")
    exporter.add_argument("--json", action="store_true")
    exporter.set_defaults(run=_export)

    lister = sub.add_parser("list", help="the projects in the database")
    lister.add_argument("--json", action="store_true")
    lister.set_defaults(run=_list)
