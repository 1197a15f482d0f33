"""BOLD's submission workbook (read back by the app's own sheet reader into a new project) and the
BOLDigger3-compatible table from the default library (real BOLD barcodes, one with no close reference)."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from clibd_core.projects.db import session_scope
from clibd_core.projects.intake import import_files
from clibd_core.projects.registry import create_project
from clibd_core.publish.bold import write_bold_workbook
from clibd_core.reference import DEFAULT_LIBRARY
from tests.plates import bold_rows, write_plates

pytestmark = pytest.mark.skipif(
    not (DEFAULT_LIBRARY / "CURRENT").exists(), reason="the default library is not built (make test builds it)"
)


def test_the_bold_workbook_carries_a_project_into_another(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIBD_HOME", str(tmp_path / "workspace"))
    url = f"sqlite:///{tmp_path / 'projects.db'}"
    plates = write_plates(tmp_path / "season", plates=1, seed=2)
    with session_scope(url) as session:
        create_project(session, "season")
        create_project(session, "copy")
    import_files("season", plates["sheet"], [plates["fasta"]], url=url)
    written = write_bold_workbook("season", tmp_path / "bold.xlsx", url=url)
    assert written == {"workbook": str(tmp_path / "bold.xlsx"), "specimens": 96, "plates": 1}
    plan = import_files("copy", tmp_path / "bold.xlsx", check_only=True, url=url)
    assert len(plan.specimens) == 96 and not plan.errors
    first = next(d for d in plan.specimens if d.sample_id == "LAB00001-A01")
    assert first.values["event_date"] == "2026-07-01" and first.values["well"] == "A01"
    assert pd.read_excel(tmp_path / "bold.xlsx", sheet_name="Plate LAB00001", index_col=0).loc["H", 12] == "LAB00001-H12"


def test_boldigger_table_from_the_local_library(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIBD_HOME", str(tmp_path / "workspace"))  # a new user's: the real BOLD library active
    rows = bold_rows(3, seed=9)
    fasta = "".join(f">q{i}\n{row['nucleotides']}\n" for i, row in enumerate(rows))
    fasta += ">stranger\n" + "ACGT" * 150 + "\n"  # no close reference anywhere
    (tmp_path / "q.fasta").write_text(fasta)
    result = subprocess.run([sys.executable, "-m", "clibd_core.cli", "boldigger", "--fasta", str(tmp_path / "q.fasta"),
                             "--out", str(tmp_path / "t.xlsx")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = pd.read_excel(tmp_path / "t.xlsx").fillna("")
    assert list(table.columns[:14]) == ["id", "phylum", "class", "order", "family", "genus", "species", "pct_identity",
                                        "status", "records", "records_ratio", "selected_level", "BIN", "flags"]  # fmt: skip
    for i, row in enumerate(rows):
        found = table.iloc[i]
        assert found["selected_level"] == "species" and found["species"] == row["species_name"]
        assert found["pct_identity"] >= 97 and found["top_hit_process_id"] != ""
    assert table.iloc[3]["status"] == "no-match" and table.iloc[3]["species"] == ""


def test_an_esv_table_with_a_negative_control_is_tabulated_by_taxon(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIBD_HOME", str(tmp_path / "workspace"))
    monkeypatch.setenv("CLIBD_DATABASE", f"sqlite:///{tmp_path / 'projects.db'}")
    rows = bold_rows(4, seed=13)
    lines = ["ID,Seq,site1,site2,NEG_extraction"]
    lines += [f"ESV_{i},{r['nucleotides']},{10 * (i + 1)},{5 if i % 2 else 0},{1 if i == 0 else 0}"
              for i, r in enumerate(rows)]  # fmt: skip
    (tmp_path / "esv.csv").write_text("\n".join(lines) + "\n")
    cli = [sys.executable, "-m", "clibd_core.cli", "project"]
    assert subprocess.run([*cli, "create", "metabarcoding"], capture_output=True).returncode == 0
    imported = subprocess.run([*cli, "import-bulk", "metabarcoding", str(tmp_path / "esv.csv")], capture_output=True,
                              text=True)  # fmt: skip
    assert imported.returncode == 0 and '"controls": ["NEG_extraction"]' in imported.stdout, imported.stderr
    exported = subprocess.run([*cli, "export", "metabarcoding", "--format", "bulk", "--out", str(tmp_path / "t.csv")],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert '"negative_control_reads": {"NEG_extraction (negative control)": 1}' in exported.stdout
    table = pd.read_csv(tmp_path / "t.csv").set_index("taxon")
    for i, row in enumerate(rows):
        taxon = row["species_name"] if row["species_name"] in table.index else row["genus_name"]
        assert table.loc[taxon, "site1"] >= 10 * (i + 1)
    assert table["site2"].sum() == 10 and table["site1"].sum() == 100
