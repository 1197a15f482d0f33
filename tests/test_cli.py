"""The ``clibd`` command: fast help, barcode checks with exit codes, checkpoint errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from clibd_core.reference import DEMO_MODEL
from tests.ports import free_port
from tests.test_dna import COI


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clibd_core.cli", *args], input=stdin, capture_output=True, text=True, timeout=300
    )


def test_help_does_not_import_torch():
    code = "import sys; from clibd_core.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False"
    assert "import-checkpoint" in run_cli("--help").stdout


def test_check_barcodes_reports_each_record_and_fails_on_rejects():
    fasta = f">good\n{COI}\n>prot\n{'MKVLAAGIVGLLLAVSQEPT' * 10}\n"
    result = run_cli("check-barcodes", "-", stdin=fasta)
    assert result.returncode == 1
    assert "good: 658 bp" in result.stdout
    assert "prot: REJECTED" in result.stdout
    as_json = [
        json.loads(line) for line in run_cli("check-barcodes", "--json", "-", stdin=f">g\n{COI}").stdout.splitlines()
    ]
    assert as_json[0]["id"] == "g" and as_json[0]["error"] is None


def test_import_checkpoint_refuses_a_bad_file(tmp_path):
    bad = tmp_path / "best.pth"
    bad.write_text("nope")
    result = run_cli("import-checkpoint", str(bad), str(tmp_path / "out"))
    assert result.returncode == 2 and "weights-only" in result.stderr


def test_embed_writes_ids_and_normalised_vectors(tmp_path):
    model_dir = DEMO_MODEL
    if not model_dir.is_dir():
        pytest.skip("reference_db/ has not been built (clibd demo)")
    fasta = tmp_path / "q.fasta"
    fasta.write_text(f">a\n{COI}\n>bad\nhello\n>b\n{COI[:400]}\n")
    result = run_cli("embed", "--model", str(model_dir), "--fasta", str(fasta), "--out", str(tmp_path / "e.npz"))
    assert result.returncode == 0 and "embedded 2 of 3" in result.stdout and "bad" in result.stderr
    saved = np.load(tmp_path / "e.npz")
    assert saved["ids"].tolist() == ["a", "b"] and saved["embeddings"].shape == (2, 256)
    np.testing.assert_allclose(np.linalg.norm(saved["embeddings"], axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_serve_starts_the_app_and_refuses_the_network_without_logins(tmp_path):
    """`clibd serve` is `python app.py`: the page answers on loopback; beyond it, no users file, no server."""
    import os
    import time
    import urllib.request

    from clibd_core.reference import default_library_is_current

    if not default_library_is_current():
        pytest.skip("the default library is not built (make test builds it)")
    environment = {**os.environ, "CLIBD_HOME": str(tmp_path)}
    environment.pop("CLIBD_USERS", None)
    refused = subprocess.run(
        [sys.executable, "-m", "clibd_core.cli", "serve", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert refused.returncode != 0 and "clibd add-user" in refused.stderr
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "clibd_core.cli", "serve", "--port", str(port)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(240):
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("clibd serve did not answer in 2 minutes")
        assert "CLIBD insect identification" in page
    finally:
        server.terminate()
        server.wait(timeout=30)
