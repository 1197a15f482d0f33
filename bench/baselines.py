"""The DNA baselines the benchmarks compare against: blastn and VSEARCH top hits, SINTAX per-rank calls,
5-mer cosine 1-NN."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from clibd_core.taxonomy import MISSING

KMERS = {"".join(k): i for i, k in enumerate(itertools.product("ACGT", repeat=5))}


def kmer_profiles(sequences: list[str]) -> np.ndarray:
    """L2-normalised 5-mer count vectors (k-mers with ambiguity codes are ignored)."""
    profiles = np.zeros((len(sequences), len(KMERS)), dtype=np.float32)
    for row, sequence in enumerate(sequences):
        for start in range(len(sequence) - 4):
            index = KMERS.get(sequence[start : start + 5])
            if index is not None:
                profiles[row, index] += 1
    return profiles / np.maximum(np.linalg.norm(profiles, axis=1, keepdims=True), 1e-9)


def _write_fasta(path: Path, sequences: list[str]) -> None:
    path.write_text("".join(f">{i}\n{s}\n" for i, s in enumerate(sequences)))


def _best_hits(lines: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Best subject (by the third column, larger is better) and its percent identity per query."""
    best: dict[int, tuple[float, int, float]] = {}
    for line in lines:
        query, subject, score, identity = line.split("\t")[:4]
        if float(score) > best.get(int(query), (-1.0, -1, 0.0))[0]:
            best[int(query)] = (float(score), int(subject), float(identity))
    hits = np.array([best.get(i, (0.0, -1, 0.0))[1] for i in range(n)])
    identities = np.array([best.get(i, (0.0, -1, 0.0))[2] for i in range(n)])
    return hits, identities


@contextmanager
def _fasta_files(tool: str, package: str, queries: list[str], keys: list[str]) -> Iterator[Path]:
    """A scratch folder holding queries.fa and keys.fa, once ``tool`` is known to be installed."""
    if not shutil.which(tool):
        raise SystemExit(f"{tool} is not installed: apt-get install {package}")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        _write_fasta(work / "keys.fa", keys)
        _write_fasta(work / "queries.fa", queries)
        yield work


def blastn_top_hits(
    queries: list[str], keys: list[str], threads: int = 2, task: str = "megablast"
) -> tuple[np.ndarray, np.ndarray, float]:
    """Each query's best blastn hit among the keys (-1 = none), its % identity, and the seconds taken.

    Debian ncbi-blast+, e-value 1e-5, best bit score; ``task``: megablast (blastn's default) or blastn
    (the sensitive mode, much slower).
    """
    with _fasta_files("blastn", "ncbi-blast+", queries, keys) as work:
        subprocess.run(
            ["makeblastdb", "-in", str(work / "keys.fa"), "-dbtype", "nucl", "-out", str(work / "db")],
            check=True,
            capture_output=True,
        )
        started = time.time()
        output = subprocess.run(
            [
                "blastn",
                "-query",
                str(work / "queries.fa"),
                "-db",
                str(work / "db"),
                "-outfmt",
                "6 qseqid sseqid bitscore pident",
                "-max_target_seqs",
                "5",
                "-num_threads",
                str(threads),
                "-evalue",
                "1e-5",
                "-task",
                task,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        seconds = time.time() - started
    return (*_best_hits(output.splitlines(), len(queries)), seconds)


def vsearch_top_hits(queries: list[str], keys: list[str], threads: int = 2) -> tuple[np.ndarray, np.ndarray, float]:
    """Each query's best VSEARCH global-alignment hit (``--usearch_global``, identity ≥ 70 %)."""
    with _fasta_files("vsearch", "vsearch", queries, keys) as work:
        started = time.time()
        subprocess.run(
            [
                "vsearch",
                "--usearch_global",
                str(work / "queries.fa"),
                "--db",
                str(work / "keys.fa"),
                "--id",
                "0.7",
                "--userout",
                str(work / "hits.tsv"),
                "--userfields",
                "query+target+id+id",
                "--maxaccepts",
                "1",
                "--threads",
                str(threads),
                "--quiet",
            ],
            check=True,
            capture_output=True,
        )
        seconds = time.time() - started
        lines = (work / "hits.tsv").read_text().splitlines()
    return (*_best_hits(lines, len(queries)), seconds)


SINTAX_RANKS = {"o": "order", "f": "family", "g": "genus", "s": "species"}


def _sintax_name(name: str) -> str:
    """A name as a SINTAX header can hold it (its fields are split on commas, colons and semicolons)."""
    return "_".join(name.replace(",", " ").replace(":", " ").replace(";", " ").split())


SINTAX_CUTOFF = 0.8  # the bootstrap support from which SINTAX's users take a rank as stated


def sintax_calls(
    queries: list[str], keys: list[str], key_lineages: list[dict[str, str]], threads: int = 2
) -> tuple[list[dict[str, tuple[str, float]]], float]:
    """SINTAX (``vsearch --sintax``, Edgar 2016) per query: {rank: (name, bootstrap support)} at every
    rank it predicts (a rank is stated where the support is ≥ ``SINTAX_CUTOFF``), names spelled as the
    keys spell them, and the seconds taken.

    The keys' lineages give the reference headers (``tax=o:…,f:…,g:…,s:…``; a missing name is left out
    of its header, so SINTAX never votes for it).
    """
    spelled = {(rank, _sintax_name(lineage[rank])): lineage[rank] for lineage in key_lineages for rank in lineage}
    with _fasta_files("vsearch", "vsearch", queries, []) as work:
        with open(work / "keys.fa", "w") as handle:
            for i, (sequence, lineage) in enumerate(zip(keys, key_lineages, strict=True)):
                ranks = [f"{code}:{_sintax_name(lineage[rank])}" for code, rank in SINTAX_RANKS.items()
                         if lineage.get(rank, MISSING) not in ("", MISSING)]  # fmt: skip
                handle.write(f">{i};tax={','.join(ranks)};\n{sequence}\n")
        started = time.time()
        subprocess.run(
            ["vsearch", "--sintax", str(work / "queries.fa"), "--db", str(work / "keys.fa"),
             "--sintax_cutoff", str(SINTAX_CUTOFF), "--tabbedout", str(work / "calls.tsv"),
             "--threads", str(threads), "--quiet"],
            check=True,
            capture_output=True,
        )  # fmt: skip
        seconds = time.time() - started
        lines = (work / "calls.tsv").read_text().splitlines()
    calls: list[dict[str, tuple[str, float]]] = [{} for _ in queries]
    for line in lines:
        fields = line.split("\t")
        for part in filter(None, fields[1].split(",") if len(fields) > 1 else []):
            code, _, rest = part.partition(":")
            name, _, support = rest.rpartition("(")
            if code in SINTAX_RANKS:
                rank = SINTAX_RANKS[code]
                calls[int(fields[0])][rank] = (spelled[rank, name], float(support.rstrip(")")))
    return calls, seconds


def sintax_stated_rank(called: dict[str, tuple[str, float]]) -> str | None:
    """The deepest rank of one query's SINTAX calls whose support reaches ``SINTAX_CUTOFF`` (None: none)."""
    return next(
        (rank for rank in reversed(SINTAX_RANKS.values()) if called.get(rank, ("", 0.0))[1] >= SINTAX_CUTOFF), None
    )
