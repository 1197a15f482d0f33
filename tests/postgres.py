"""A PostgreSQL server of our own (Debian's postgresql, which `make test` installs as root) on a private
socket: for the database tests and bench/project_scale.py."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.ports import free_port


class PostgresUnavailable(RuntimeError):
    """Why no server could be started here."""


def start_server() -> dict:
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        raise PostgresUnavailable("PostgreSQL is not installed (apt-get install postgresql; make test does it as root)")
    bindir = Path(binaries[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="clibd-pg-"))
    prefix = []
    if os.getuid() == 0:  # initdb refuses root: the server runs as Debian's postgres user
        if shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root without runuser: cannot start PostgreSQL as another user")
        shutil.chown(root, "postgres")
        root.chmod(0o755)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = root / "data"
    try:
        subprocess.run([*prefix, bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres"], check=True,
                       capture_output=True, timeout=120)  # fmt: skip
        options = f"-k {root} -p {port} -c listen_addresses='' -c fsync=off"
        subprocess.run([*prefix, bindir / "pg_ctl", "-D", data, "-o", options, "-w", "-l", root / "log", "start"],
                       check=True, capture_output=True, timeout=120)  # fmt: skip
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailable(f"could not start PostgreSQL: {error}") from error
    return {"host": str(root), "port": port, "prefix": prefix, "bindir": bindir, "data": data}


def new_database(server: dict, name: str) -> str:
    """An empty database on ``server``; its SQLAlchemy URL."""
    import psycopg

    with psycopg.connect(host=server["host"], port=server["port"], user="postgres", dbname="postgres",
                         autocommit=True) as connection:  # fmt: skip
        connection.execute(f"CREATE DATABASE {name}")
    return f"postgresql+psycopg://postgres@/{name}?host={server['host']}&port={server['port']}"


def stop_server(server: dict) -> None:
    subprocess.run([*server["prefix"], server["bindir"] / "pg_ctl", "-D", server["data"], "-m", "immediate", "stop"],
                   capture_output=True)  # fmt: skip
    shutil.rmtree(server["host"], ignore_errors=True)
