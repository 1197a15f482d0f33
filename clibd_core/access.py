"""Who may use a served app, and which server paths a request may name.

Users live in a file of ``name:pbkdf2_sha256$iterations$salt$hash`` lines (``clibd add-user FILE NAME``
writes one; passwords are never stored). A pipeline's token for the JSON API is a ``name#token`` line
(``clibd add-token FILE NAME`` prints the token once and keeps only its SHA-256: it is 256 random bits,
so no slow hash is needed); a token is never a password for the page. The app asks for a login through
Gradio's own ``auth`` whenever it is bound beyond the loopback interface, and refuses to start there
without users.

Server paths typed into the app (library import, training data, checkpoints, run directories) are
resolved, symlinks included, and must lie inside a root the operator allows: the workspace and the
folders listed in ``CLIBD_DATA_ROOTS`` (separated by ``os.pathsep``). Anything else is refused before it
is opened, so no request can read, or learn of, a file outside them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from clibd_core.fileio import atomic_file
from clibd_core.reference import REFERENCE_DB

ITERATIONS = 200_000
LOOPBACK = ("127.0.0.1", "localhost", "::1")
TOKEN_SUFFIX = "#token"  # a users-file entry holding a name's API token
TOKEN_SCHEME = "token_sha256"


class AccessError(ValueError):
    """A path outside the allowed roots, or a users file that cannot be used."""


def hash_password(password: str, iterations: int = ITERATIONS) -> str:
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), iterations).hex()
    return f"pbkdf2_sha256${iterations}${salt}${digest}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        computed = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations)).hex()
    except ValueError:
        return False
    return hmac.compare_digest(computed, digest)


def read_users(path: str | Path) -> dict[str, str]:
    """``{name: stored hash}`` from a users file; a malformed line is an error naming its number."""
    users = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, stored = line.strip().partition(":")
        if not name or stored.count("$") != 3:
            raise AccessError(f"{path}, line {number}: expected name:pbkdf2_sha256$iterations$salt$hash")
        users[name] = stored
    return users


def add_user(path: str | Path, name: str, password: str) -> None:
    """Add or replace one user (the file is rewritten atomically, readable by its owner only)."""
    if len(password) < 8:
        raise AccessError("a password of at least 8 characters is needed")
    _store(path, _checked_name(name), hash_password(password))


def add_token(path: str | Path, name: str) -> str:
    """A new API token for ``name`` (replacing the last one), returned once: only its digest is kept."""
    token = secrets.token_urlsafe(32)
    _store(path, _checked_name(name) + TOKEN_SUFFIX, f"{TOKEN_SCHEME}$1$${hashlib.sha256(token.encode()).hexdigest()}")
    return token


def token_user(path: str | Path, token: str) -> str | None:
    """Whose token this is, or None."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    for name, stored in read_users(path).items():
        scheme, _, _, kept = stored.split("$")
        if scheme == TOKEN_SCHEME and name.endswith(TOKEN_SUFFIX) and hmac.compare_digest(kept, digest):
            return name.removesuffix(TOKEN_SUFFIX)
    return None


def _checked_name(name: str) -> str:
    if not name or ":" in name or TOKEN_SUFFIX[0] in name:
        raise AccessError(f"a user name is needed, without ':' or '{TOKEN_SUFFIX[0]}'")
    return name


def _store(path: str | Path, name: str, stored: str) -> None:
    path = Path(path)
    users = read_users(path) if path.exists() else {}
    users[name] = stored
    with atomic_file(path) as temporary:
        temporary.chmod(0o600)
        temporary.write_text("".join(f"{user}:{kept}\n" for user, kept in users.items()))


def authenticator(path: str | Path):
    """A Gradio ``auth`` callable checking logins against the users file (re-read at each login)."""

    def check(name: str, password: str) -> bool:
        stored = read_users(path).get(name)
        return stored is not None and verify_password(password, stored)

    return check


def allowed_roots(workspace_root: Path) -> list[Path]:
    """The workspace, the embedded reference_db/ and the operator's CLIBD_DATA_ROOTS."""
    extra = [Path(p) for p in os.environ.get("CLIBD_DATA_ROOTS", "").split(os.pathsep) if p.strip()]
    return [root.resolve() for root in (workspace_root, REFERENCE_DB, *extra)]


def confine(path: str | Path, roots: list[Path]) -> Path:
    """``path`` resolved (symlinks followed) if it lies inside one of ``roots``; else AccessError,
    raised before anything is read and without saying whether the path exists."""
    resolved = Path(path).expanduser().resolve()
    if not any(resolved == root or root in resolved.parents for root in roots):
        listed = ", ".join(str(root) for root in roots)
        raise AccessError(
            f"'{path}' is outside the folders this server may read ({listed}); the operator adds folders "
            "with CLIBD_DATA_ROOTS, or upload the file instead"
        )
    return resolved
