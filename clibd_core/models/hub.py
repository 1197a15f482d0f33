"""The official CLIBD checkpoints, fetched from their Hugging Face repository and imported in one step.

``huggingface_hub`` (installed with transformers) does the downloading: progress, resuming an
interrupted transfer, the local cache. Its endpoint follows ``HF_ENDPOINT`` (a mirror, or a test server).
The file's SHA-256 is then checked against the one the hub publishes for it (its LFS ETag), and only a
matching file is imported (models/official.py). Offline, the error says so at once with the manual steps.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from clibd_core.fileio import file_sha256

OFFICIAL_REPO = "bioscan-ml/clibd"
RELEASES = {
    f"{dataset}/{towers}": f"ckpt/bioscan_clip/ver_1_0/{dataset}/{towers}_4gpu/best.pth"
    for dataset in ("bioscan_1m", "bioscan_5m")
    for towers in ("image_dna_text", "image_dna", "image_text")
}
DEFAULT_RELEASE = "bioscan_5m/image_dna_text"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class HubUnavailableError(OSError):
    """The hub cannot be reached: the message says how to get the file by hand."""


def manual_steps(release: str) -> str:
    return (
        f"On a machine with internet, download https://huggingface.co/{OFFICIAL_REPO}/resolve/main/{RELEASES[release]} "
        "and copy it here; then import it: Libraries → 'Import an official CLIBD checkpoint', or "
        "`clibd import-checkpoint best.pth models/clibd`."
    )


def fetch_official_model(release: str, out_dir: str | Path, progress: Callable[[str], None] | None = None) -> Path:
    """Download ``release`` (a key of RELEASES), verify its checksum, import it into ``out_dir``. The
    endpoint and cache follow ``HF_ENDPOINT`` and ``HF_HUB_CACHE`` as they are at the call."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    from clibd_core.models.official import CheckpointError, import_official_checkpoint  # torch: only when fetching

    if release not in RELEASES:
        raise CheckpointError(f"unknown release '{release}': choose one of {', '.join(RELEASES)}")
    filename = RELEASES[release]
    say = progress or (lambda message: None)
    try:
        say(f"asking the hub for {filename}")
        endpoint, cache = os.environ.get("HF_ENDPOINT"), os.environ.get("HF_HUB_CACHE")
        metadata = get_hf_file_metadata(hf_hub_url(OFFICIAL_REPO, filename, endpoint=endpoint))
        say(f"downloading {metadata.size / 2**20:,.0f} MB (an interrupted download resumes)")
        path = Path(hf_hub_download(OFFICIAL_REPO, filename, endpoint=endpoint, cache_dir=cache))
    except Exception as error:  # noqa: BLE001 - the hub client raises its HTTP library's own kinds too
        raise HubUnavailableError(
            f"the Hugging Face hub could not be reached ({type(error).__name__}). {manual_steps(release)}"
        ) from error
    expected = (metadata.etag or "").strip('"')
    if _SHA256.match(expected):
        say("checking the file's SHA-256")
        actual = file_sha256(path)
        if actual != expected:
            path.resolve().unlink(missing_ok=True)  # the cached blob, then the snapshot's link to it
            path.unlink(missing_ok=True)
            raise CheckpointError(
                f"{filename}: SHA-256 {actual[:16]}… does not match the hub's {expected[:16]}…: the copy was "
                "removed; try again"
            )
    say("importing")
    return import_official_checkpoint(path, out_dir)
