"""The JSON API beside the page (FastAPI, which Gradio is built on): what a LIMS or a metabarcoding
pipeline calls over plain HTTP. Versioned under /api/v1, documented at /docs, behind the same logins
as the page (HTTP basic, checked against the users file, or a user's token) whenever the server has users.

    POST /api/v1/identify/barcodes   {"barcodes": [{"id": "...", "sequence": "..."}]} or a FASTA body
    POST /api/v1/identify/images     multipart files
    GET  /api/v1/info                the active library and model
    GET  /api/v1/projects/{name}/status
    GET  /api/v1/projects/{name}/export?format=dwca|bold&all=false
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, File, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer
from pydantic import BaseModel, Field

from clibd_core.access import read_users, token_user, verify_password
from clibd_core.data.uploads import IMAGE_SUFFIXES

MAX_BARCODES = 10_000  # per request
MAX_BODY = 32 * 1024 * 1024  # bytes of JSON or FASTA
MAX_IMAGES = 64
_basic = HTTPBasic(auto_error=False)
_bearer = HTTPBearer(auto_error=False)
_verified: dict[str, tuple[float, str]] = {}  # digest of name:password → (users file mtime, name)


class Barcode(BaseModel):
    id: str = Field(max_length=500)
    sequence: str = Field(max_length=100_000)


class BarcodeBatch(BaseModel):
    barcodes: list[Barcode]


def login(
    credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The caller's name: anyone on a server without users (loopback), else a valid login (HTTP basic)
    or a user's token (``Authorization: Bearer``, from `clibd add-token`)."""
    users = os.environ.get("CLIBD_USERS")
    if not users:
        return ""
    refused = HTTPException(
        401, "log in with your name and password (HTTP basic) or your token (Bearer)", {"WWW-Authenticate": "Basic"}
    )
    if bearer is not None and bearer.scheme.lower() == "bearer":
        name = token_user(users, bearer.credentials)
        if name is None:
            raise refused
        return name
    if credentials is None:
        raise refused
    mtime = Path(users).stat().st_mtime
    digest = hashlib.sha256(f"{credentials.username}:{credentials.password}".encode()).hexdigest()
    if _verified.get(digest, (None,))[0] == mtime:  # PBKDF2 once per login and users-file version
        return credentials.username
    stored = read_users(users).get(credentials.username)
    if stored is None or not verify_password(credentials.password, stored):
        raise refused
    _verified[digest] = (mtime, credentials.username)
    return credentials.username


def answer_json(result) -> dict:
    """One query's answer: the name and confidence at every rank, the deepest stated rank, novelty, BIN."""
    stated = result.deepest_rank
    return {
        "id": result.query_id,
        "type": result.query_type,
        "ranks": {rank: {"name": c.name, "confidence": round(c.confidence, 4)} for rank, c in result.ranks.items()},
        "deepest_rank": stated,
        "name": result.ranks[stated].name if stated else None,
        "confidence": round(result.ranks[stated].confidence, 4) if stated else None,
        "novel": bool(result.novel),
        "novelty": round(float(result.novelty), 4),
        "nearest_bin": None
        if result.bin is None
        else {
            "bin": result.bin.name,
            "identity": round(result.bin.identity, 2),
            "inside": result.bin.inside,
        },  # fmt: skip
        "top_identity": result.neighbours[0].identity if result.neighbours else None,
        "warnings": result.warnings,
        "error": result.error,
    }


def _pair():
    from clibd_core.workspace import Workspace, load_cached_library, load_cached_model

    library, model = Workspace().active()
    return load_cached_library(library), load_cached_model(str(model))


async def _barcodes_from(request: Request) -> list[tuple[str, str]]:
    from clibd_core.dna import BarcodeError, parse_sequences

    declared = int(request.headers.get("content-length") or 0)
    if declared > MAX_BODY:
        raise HTTPException(413, f"the body is {declared / 2**20:.1f} MB, more than {MAX_BODY >> 20} MB: split it")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, f"the body is more than {MAX_BODY >> 20} MB: split it")
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            batch = BarcodeBatch.model_validate_json(body)
        except ValueError as error:
            shape = '{"barcodes": [{"id": "...", "sequence": "..."}]}'
            raise HTTPException(422, f"expected {shape}: {str(error).splitlines()[0]}") from None
        pairs = [(b.id, b.sequence) for b in batch.barcodes]
    else:
        try:
            pairs = parse_sequences(body.decode("utf-8", "replace"))
        except BarcodeError as error:
            raise HTTPException(400, str(error)) from None
    if not pairs:
        raise HTTPException(400, "no barcode in the request")
    if len(pairs) > MAX_BARCODES:
        raise HTTPException(413, f"{len(pairs):,} barcodes in one request, more than {MAX_BARCODES:,}: split it")
    return pairs


def _identify(queries) -> dict:
    from clibd_core.answering import served_identify
    from clibd_core.library.store import LibraryError

    library, model = _pair()
    try:
        results = served_identify(library, model, queries)
    except (LibraryError, ValueError) as error:
        raise HTTPException(400, str(error)) from None
    return {"library": f"{library.name} {library.version_dir.name}", "model": model.fingerprint,
            "results": [answer_json(r) for r in results]}  # fmt: skip


def router() -> APIRouter:
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(login)])

    @api.post("/identify/barcodes", summary="identify barcodes (JSON, or a FASTA body as text/plain)")
    async def identify_barcodes(request: Request) -> dict:
        from starlette.concurrency import run_in_threadpool

        from clibd_core.library.identification import Query

        pairs = await _barcodes_from(request)
        return await run_in_threadpool(_identify, [Query(i, barcode=s) for i, s in pairs])

    @api.post("/identify/images", summary="identify photos (multipart files)")
    def identify_images(files: Annotated[list[UploadFile], File()]) -> dict:
        from clibd_core.library.identification import Query

        if len(files) > MAX_IMAGES:
            raise HTTPException(413, f"{len(files)} photos in one request, more than {MAX_IMAGES}: split them")
        queries = []
        for upload in files:
            if Path(upload.filename or "").suffix.lower() not in IMAGE_SUFFIXES:
                raise HTTPException(415, f"{upload.filename}: not a photo ({', '.join(IMAGE_SUFFIXES)})")
            queries.append(Query(Path(upload.filename).stem, image=upload.file.read()))
        return _identify(queries)

    @api.get("/info", summary="the active library and model, and what its species names rest on")
    def info() -> dict:
        from clibd_core.library.coverage import naming_facts

        library, model = _pair()
        summary = library.summary()
        return {"library": {k: summary[k] for k in ("name", "version", "records", "species_count", "orders")},
                "modalities": library.modalities, "model": model.fingerprint,
                "model_modalities": list(model.config.modalities), "naming": naming_facts(library)}  # fmt: skip

    @api.get("/projects/{name}/status", summary="a project's specimens, identified, verified, agreement")
    def status(name: str) -> dict:
        from clibd_core.projects.db import session_scope
        from clibd_core.projects.registry import get_project
        from clibd_core.projects.review import project_status

        with session_scope() as session:
            return project_status(session, get_project(session, name))

    @api.get("/projects/{name}/export", summary="GBIF's Darwin Core Archive (dwca) or BOLD's workbook (bold)")
    def export(name: str, format: str = "dwca", all: bool = False) -> FileResponse:  # noqa: A002 - query names
        from clibd_core.publish.bold import write_bold_workbook
        from clibd_core.publish.dwca import write_dwca

        if format not in ("dwca", "bold"):
            raise HTTPException(400, "format is dwca or bold")
        out = Path(tempfile.mkdtemp(prefix="clibd-export-")) / f"{name}.{'zip' if format == 'dwca' else 'xlsx'}"
        if format == "dwca":
            write_dwca(name, out, verified_only=not all)
        else:
            write_bold_workbook(name, out)
        return FileResponse(out, filename=out.name)

    return api


def api_app() -> FastAPI:
    """The FastAPI app the page is mounted on (ui/server.py), with the API and errors in words."""
    app = FastAPI(title="CLIBD API", version="1", description=__doc__)
    app.include_router(router())

    @app.exception_handler(ValueError)
    async def refused(_request: Request, error: ValueError) -> JSONResponse:  # ProjectError, LibraryError, …
        return JSONResponse({"detail": str(error).splitlines()[0][:2000]}, status_code=400)

    @app.exception_handler(OSError)
    async def unavailable(_request: Request, error: OSError) -> JSONResponse:
        return JSONResponse({"detail": f"the server could not read or write a file ({type(error).__name__})"},
                            status_code=500)  # fmt: skip

    return app
