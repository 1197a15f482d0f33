"""The JSON API on the served app (the same server as the page): barcodes as JSON and as a FASTA body,
a body over the cap refused with 413 and a message, hostile bodies answered in words, and the logins
beyond loopback (401 without, the answer with HTTP basic)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from base64 import b64encode

import pytest

from clibd_core.reference import DEFAULT_LIBRARY
from tests.plates import bold_rows
from tests.ports import free_port

pytestmark = pytest.mark.skipif(
    not (DEFAULT_LIBRARY / "CURRENT").exists(), reason="the default library is not built (make test builds it)"
)


def serve(host: str = "127.0.0.1") -> tuple[str, object]:
    import uvicorn

    from clibd_core.ui.server import server_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(server_app(host), host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.time() + 60
    while not server.started and time.time() < deadline:
        time.sleep(0.1)
    return f"http://127.0.0.1:{port}", server


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    import os

    previous = os.environ.get("CLIBD_HOME")
    os.environ["CLIBD_HOME"] = str(tmp_path_factory.mktemp("api_home"))  # a new workspace: the BOLD library
    url, server = serve()
    yield url
    server.should_exit = True
    if previous is None:
        os.environ.pop("CLIBD_HOME")
    else:
        os.environ["CLIBD_HOME"] = previous


def post(url: str, body: bytes, content_type: str, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"content-type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_barcodes_as_json_and_as_fasta_get_an_answer_per_query(api):
    rows = bold_rows(2, seed=21)
    payload = {"barcodes": [{"id": f"s{i}", "sequence": r["nucleotides"]} for i, r in enumerate(rows)]}
    status, answer = post(api + "/api/v1/identify/barcodes", json.dumps(payload).encode(), "application/json")
    assert status == 200 and [r["id"] for r in answer["results"]] == ["s0", "s1"]
    first = answer["results"][0]
    assert first["name"] == rows[0]["species_name"] and first["deepest_rank"] == "species"
    assert set(first["ranks"]) == {"order", "family", "genus", "species"} and "novelty" in first
    assert first["nearest_bin"]["inside"] is True
    fasta = "".join(f">f{i}\n{r['nucleotides']}\n" for i, r in enumerate(rows)).encode()
    status, answer = post(api + "/api/v1/identify/barcodes", fasta, "text/plain")
    assert status == 200 and answer["results"][1]["name"] == rows[1]["species_name"]


def test_info_says_what_the_names_rest_on(api):
    with urllib.request.urlopen(api + "/api/v1/info", timeout=60) as response:
        info = json.loads(response.read())
    assert info["library"]["records"] > 80_000 and "dna" in info["modalities"]
    assert info["naming"]["checklist"] is None and info["naming"]["bin_registry"] is None
    assert info["naming"]["suspect_labels"] >= 100  # the default library's mislabelled references


def test_hostile_bodies_are_answered_in_words(api):
    cases = [
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "text/plain"),
        (b'{"barcodes": [{"id": 1}]}', "application/json"),
        (b"not json", "application/json"),
        (b"", "text/plain"),
        (b">x\n" + b"ACGT" * 5, "text/plain"),
    ]
    for body, kind in cases:
        status, answer = post(api + "/api/v1/identify/barcodes", body, kind)
        text = json.dumps(answer)
        assert status in (200, 400, 422), (body[:20], status)
        assert ("detail" in answer and answer["detail"]) or all(r["error"] for r in answer["results"]), text
        assert "Traceback" not in text
    over = "".join(f">r{i}\nACGTACGTACGTACGTACGT\n" for i in range(10_001)).encode()  # over the batch cap
    status, answer = post(api + "/api/v1/identify/barcodes", over, "text/plain")
    assert status == 413 and "more than 10,000: split it" in answer["detail"]
    with urllib.request.urlopen(api + "/docs", timeout=30) as page:  # OpenAPI docs, and the app still up
        assert page.status == 200


def test_beyond_loopback_the_api_needs_a_login(tmp_path, monkeypatch):
    from clibd_core.access import add_user, authenticator

    users = tmp_path / "users.txt"
    add_user(users, "ana", "correct horse battery")
    monkeypatch.setenv("CLIBD_USERS", str(users))
    monkeypatch.setenv("CLIBD_HOME", str(tmp_path / "home"))
    url, server = serve("0.0.0.0")
    try:
        body = json.dumps({"barcodes": [{"id": "a", "sequence": bold_rows(1)[0]["nucleotides"]}]}).encode()
        status, answer = post(url + "/api/v1/identify/barcodes", body, "application/json")
        assert status == 401 and "log in" in answer["detail"]
        wrong = {"authorization": "Basic " + b64encode(b"ana:wrong password").decode()}
        assert post(url + "/api/v1/identify/barcodes", body, "application/json", wrong)[0] == 401
        right = {"authorization": "Basic " + b64encode(b"ana:correct horse battery").decode()}
        status, answer = post(url + "/api/v1/identify/barcodes", body, "application/json", right)
        assert status == 200 and answer["results"][0]["name"]
        token = subprocess.run(
            [sys.executable, "-m", "clibd_core.cli", "add-token", str(users), "lims"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        assert token and token not in users.read_text()  # only its digest is kept
        bearer = {"authorization": f"Bearer {token}"}
        assert post(url + "/api/v1/identify/barcodes", body, "application/json", bearer)[0] == 200
        forged = {"authorization": f"Bearer {token[:-2]}xx"}
        assert post(url + "/api/v1/identify/barcodes", body, "application/json", forged)[0] == 401
        page_login = authenticator(users)  # a token is never a password for the page
        assert not page_login("lims#token", token) and not page_login("lims", token)
    finally:
        server.should_exit = True
