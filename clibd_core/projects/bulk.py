"""Bulk samples (metabarcoding): an ESV/OTU × sample table of read counts becomes one specimen per sample
(negative controls flagged by name) holding its sequences with their reads; every distinct sequence is
identified once, and the project's sample × taxon table gives reads at each sequence's deepest stated rank.

Tables understood: APSCALE-style (a row per ESV: ``ID``, ``Seq``, then one column of reads per sample),
MetaWorks ``results.csv`` (a row per ESV and sample: ``SampleName``, ``GlobalESV``, ``ESVsize``, and the
sequence in ``ESVseq``/``ORFseq``), or a FASTA of the ESVs with a counts table (``ID`` then samples).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from clibd_core.dna import parse_fasta
from clibd_core.fileio import atomic_file
from clibd_core.projects.db import ProjectError, session_scope
from clibd_core.projects.intake import Problem
from clibd_core.projects.registry import get_project
from clibd_core.projects.schema import QueryItem, Specimen
from clibd_core.textio import read_text

CONTROL_NAME = re.compile(r"(^|[^a-z])(neg|negative|blank|ntc|control|ctrl|extraction[_ -]?blank)([^a-z]|$)", re.I)
ID_COLUMNS = ("id", "esv", "otu", "globalesv", "esvid", "otuid", "#otu id", "qseqid")
SEQUENCE_COLUMNS = ("seq", "sequence", "sequences", "esvseq", "orfseq", "nucleotides")


def _table(path: Path) -> pd.DataFrame:
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        return pd.read_excel(path, dtype=str).fillna("")
    sep = "\t" if path.suffix.lower() in (".tsv", ".txt") else None
    return pd.read_csv(path, sep=sep, engine="python", dtype=str).fillna("")


def _column(frame: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    return next((c for c in frame.columns if c.strip().lower() in names), None)


def read_bulk(table: str | Path, fasta: str | Path | None = None) -> tuple[dict[str, str], dict[str, dict], list]:
    """(ESV → sequence, sample → {ESV → reads}, problems) from any of the layouts above."""
    frame = _table(Path(table))
    problems: list[Problem] = []
    sequences: dict[str, str] = {}
    if fasta:
        records = parse_fasta(read_text(fasta))
        sequences = {header.split()[0]: body.replace("\n", "").strip() for header, body in records if header}
    lower = {c.strip().lower(): c for c in frame.columns}
    counts: dict[str, dict[str, int]] = {}
    if "samplename" in lower and "esvsize" in lower:  # MetaWorks: long
        esv_col = lower.get("globalesv") or _column(frame, ID_COLUMNS)
        seq_col = _column(frame, SEQUENCE_COLUMNS)
        for number, row in frame.iterrows():
            esv, reads = row[esv_col], _reads(row[lower["esvsize"]], f"row {number + 2}", problems)
            if seq_col and row[seq_col]:
                sequences.setdefault(esv, row[seq_col])
            if reads:
                counts.setdefault(row[lower["samplename"]], {})[esv] = reads
    else:  # wide: an ESV per row, a sample per column
        id_col = _column(frame, ID_COLUMNS) or frame.columns[0]
        seq_col = _column(frame, SEQUENCE_COLUMNS)
        samples = [c for c in frame.columns if c not in (id_col, seq_col) and c.strip().lower() not in
                   ("taxonomy", "total", "sum", "length")]  # fmt: skip
        for number, row in frame.iterrows():
            esv = row[id_col]
            if seq_col and row[seq_col]:
                sequences.setdefault(esv, row[seq_col])
            for sample in samples:
                reads = _reads(row[sample], f"row {number + 2} column {sample}", problems)
                if reads:
                    counts.setdefault(sample, {})[esv] = reads
    for esv in sorted({e for per in counts.values() for e in per} - set(sequences)):
        problems.append(Problem(esv, "no sequence for this ESV (give the FASTA, or a sequence column)"))
    return sequences, counts, problems


def _reads(text: str, where: str, problems: list) -> int:
    text = str(text).strip()
    if not text:
        return 0
    try:
        value = float(text)
    except ValueError:
        problems.append(Problem(where, f"'{text}' is not a number of reads"))
        return 0
    if value < 0 or value != int(value):
        problems.append(Problem(where, f"{text} is not a whole, non-negative number of reads"))
        return 0
    return int(value)


def import_bulk(
    project_name: str, table: str | Path, fasta: str | Path | None = None, url: str | None = None
) -> dict:
    """One specimen per sample with its sequences and reads; all or nothing."""
    sequences, counts, problems = read_bulk(table, fasta)
    if not counts and not problems:
        problems.append(Problem(str(table), "no reads in the table"))
    with session_scope(url) as session:
        project = get_project(session, project_name)
        known = set(session.scalars(select(Specimen.sample_id).where(Specimen.project_id == project.id)))
        problems += [Problem(sample, f"sample {sample} is already in project {project.name}")
                     for sample in counts if sample in known]  # fmt: skip
        if problems:
            report = "\n".join(f"  error  {p}" for p in problems)
            raise ProjectError(f"nothing was imported: {len(problems)} problems\n{report}")
        for sample, per_esv in counts.items():
            specimen = Specimen(project=project, sample_id=sample, control=bool(CONTROL_NAME.search(sample)),
                                given_taxonomy={}, extra={"bulk": "true"})  # fmt: skip
            session.add(specimen)
            for esv, reads in per_esv.items():
                session.add(QueryItem(specimen=specimen, kind="barcode", sequence=sequences[esv], marker="COI-5P",
                                      source=str(Path(table).name), details={"esv": esv, "reads": reads}))  # fmt: skip
    controls = [s for s in counts if CONTROL_NAME.search(s)]
    return {"samples": len(counts), "esvs": len({e for per in counts.values() for e in per}), "controls": controls}


def write_bulk_table(project_name: str, out: str | Path, library_path: str | None = None,
                     url: str | None = None) -> dict:  # fmt: skip
    """Reads per taxon (rows) and sample (columns), each distinct sequence identified once; negative
    controls' columns are marked and their reads reported."""
    from clibd_core.library.identification import Query
    from clibd_core.library.search import identify
    from clibd_core.workspace import Workspace, load_cached_library, load_cached_model

    with session_scope(url) as session:
        project = get_project(session, project_name)
        specimens = session.scalars(
            select(Specimen).where(Specimen.project_id == project.id).options(selectinload(Specimen.queries))
        ).all()
        bulk = [(s.sample_id, s.control, [(q.sequence, q.details.get("reads", 0)) for q in s.queries
                 if q.kind == "barcode" and "reads" in q.details]) for s in specimens]  # fmt: skip
    bulk = [b for b in bulk if b[2]]
    if not bulk:
        raise ProjectError(f"project {project_name} has no bulk samples (clibd project import-bulk)")
    distinct = sorted({sequence for _, _, reads in bulk for sequence, _ in reads})
    library = load_cached_library(Path(library_path or Workspace().active()[0]))
    model = load_cached_model(str(library.model_path))
    named = {}
    for sequence, result in zip(distinct, identify(library, model, [Query(f"s{i}", barcode=s) for i, s in
                                                                   enumerate(distinct)]), strict=True):  # fmt: skip
        stated = result.deepest_rank
        named[sequence] = (result.ranks[stated].name, stated) if stated and not result.error else ("unassigned", "")
    rows: dict[tuple[str, str], dict[str, int]] = {}
    columns = []
    for sample, control, reads in bulk:
        column = f"{sample} (negative control)" if control else sample
        columns.append(column)
        for sequence, count in reads:
            cell = rows.setdefault(named[sequence], {})
            cell[column] = cell.get(column, 0) + count
    records = [{"taxon": taxon, "rank": rank, **{c: cells.get(c, 0) for c in columns}}
               for (taxon, rank), cells in rows.items()]  # fmt: skip
    table = pd.DataFrame(records).sort_values(["rank", "taxon"])
    with atomic_file(out) as partial:
        table.to_csv(partial, index=False)
    control_reads = {c: int(table[c].sum()) for c in columns if c.endswith("(negative control)")}
    return {"table": str(out), "samples": len(columns), "distinct_sequences": len(distinct), "taxa": len(rows),
            "negative_control_reads": control_reads}  # fmt: skip
