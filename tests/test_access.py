"""A served app: logins (hashed, required beyond loopback) and server paths confined to allowed roots."""

from __future__ import annotations

from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AuthenticationError

from clibd_core.access import AccessError, add_user, allowed_roots, authenticator, confine, read_users, verify_password
from clibd_core.cli import main as clibd
from clibd_core.ui.server import build_app, login_for
from tests.ports import free_port
from tests.test_dna import COI


def test_passwords_are_stored_hashed_and_verified(tmp_path):
    users = tmp_path / "users.txt"
    add_user(users, "ana", "correct horse")
    stored = read_users(users)["ana"]
    assert "correct horse" not in users.read_text() and stored.startswith("pbkdf2_sha256$")
    assert verify_password("correct horse", stored) and not verify_password("wrong horse", stored)
    check = authenticator(users)
    assert check("ana", "correct horse") and not check("ana", "") and not check("bob", "correct horse")
    assert oct(users.stat().st_mode & 0o777) == "0o600"
    users.write_text("broken line\n")
    with pytest.raises(AccessError, match="line 1"):
        read_users(users)


def test_clibd_add_user_reads_the_password_from_stdin(tmp_path, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    assert clibd(["add-user", str(tmp_path / "u.txt"), "lab", "--password-stdin"]) == 0
    assert authenticator(tmp_path / "u.txt")("lab", "a long password")


def test_serving_a_network_needs_users(tmp_path, monkeypatch):
    monkeypatch.delenv("CLIBD_USERS", raising=False)
    assert login_for("127.0.0.1") is None
    with pytest.raises(SystemExit, match="clibd add-user"):
        login_for("0.0.0.0")
    add_user(tmp_path / "users.txt", "ana", "correct horse")
    monkeypatch.setenv("CLIBD_USERS", str(tmp_path / "users.txt"))
    assert login_for("0.0.0.0")("ana", "correct horse")


def test_paths_outside_the_roots_are_refused_symlinks_included(tmp_path, monkeypatch):
    root = tmp_path / "workspace"
    (root / "data").mkdir(parents=True)
    (root / "data" / "mine.tsv").write_text("x")
    (root / "data" / "escape").symlink_to("/etc")
    monkeypatch.delenv("CLIBD_DATA_ROOTS", raising=False)
    roots = allowed_roots(root)
    assert confine(root / "data" / "mine.tsv", roots) == (root / "data" / "mine.tsv").resolve()
    for outside in ("/etc/passwd", root / "data" / "escape" / "passwd", root / ".." / "elsewhere"):
        with pytest.raises(AccessError, match="outside the folders"):
            confine(outside, roots)
    monkeypatch.setenv("CLIBD_DATA_ROOTS", "/etc")
    assert confine("/etc/passwd", allowed_roots(root)) == Path("/etc/passwd")


def test_the_app_refuses_server_paths_outside_its_roots_without_reading_them(app_url):
    client = Client(app_url, verbose=False)
    calls = {
        "/import_library": (None, "/etc/passwd", "stolen", None, "auto"),
        "/import_checkpoint": (None, "/etc/passwd", "stolen"),
        "/activate": ("/etc", None),
    }
    for endpoint, arguments in calls.items():
        with pytest.raises(Exception) as raised:
            client.predict(*arguments, api_name=endpoint)
        message = str(raised.value)
        assert "outside the folders" in message and "root:" not in message, endpoint


def test_a_served_app_asks_for_a_login(tmp_path, home):
    add_user(tmp_path / "users.txt", "ana", "correct horse")
    port = free_port()
    app = build_app()
    app.queue().launch(
        prevent_thread_lock=True, server_port=port, quiet=True, auth=authenticator(tmp_path / "users.txt")
    )
    try:
        with pytest.raises(AuthenticationError, match="Please login"):
            Client(f"http://127.0.0.1:{port}/", verbose=False)
        with pytest.raises(ValueError, match="Could not login"):
            Client(f"http://127.0.0.1:{port}/", auth=("ana", "wrong horse"), verbose=False)
        client = Client(f"http://127.0.0.1:{port}/", auth=("ana", "correct horse"), verbose=False)
        answer = client.predict([], ">logged_in\n" + COI, None, 10, "", "", "auto", api_name="/identify")
        assert answer[0].startswith("## logged_in")
    finally:
        app.close()
