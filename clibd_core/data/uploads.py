"""Files a user hands over for identification: images, FASTA/raw sequence files and zips of either.

Zips are unpacked member by member into a private folder (names flattened, so a member cannot
escape it), with limits on the number and size of members; whatever is not an image or a sequence
file is listed with the reason it was left out, never silently dropped.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from clibd_core.textio import as_utf8, decode_line, normalise_newlines, read_text

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jfif", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".ppm", ".pgm")
SEQUENCE_SUFFIXES = (".fasta", ".fa", ".fas", ".fna", ".txt", ".seq")
MAX_MEMBERS = 20_000
MAX_MEMBER_BYTES = 200 * 1024 * 1024
MAX_UNPACKED_BYTES = 4 << 30


@dataclass
class Inputs:
    barcode_text: str = ""
    images: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def collect_inputs(paths: Sequence[str | Path], unpack_to: Path | None = None) -> Inputs:
    """Sort uploaded files into barcode text and image paths (zips unpacked into ``unpack_to``)."""
    inputs = Inputs()
    texts = []
    for path in map(Path, paths):
        suffix = path.suffix.lower()
        if suffix == ".zip":
            _unpack(path, Path(unpack_to or tempfile.mkdtemp(prefix="clibd-zip-")), inputs, texts)
        elif suffix in IMAGE_SUFFIXES:
            inputs.images.append(path)
        elif suffix in SEQUENCE_SUFFIXES:
            texts.append(read_text(path))
        else:
            inputs.skipped.append(f"{path.name}: not an image ({', '.join(IMAGE_SUFFIXES)}), sequence file or zip")
    inputs.barcode_text = "\n".join(_as_fasta(text, n) for n, text in enumerate(texts))
    return inputs


def _as_fasta(text: str, number: int) -> str:
    """A raw sequence file becomes one FASTA record, so several files can be joined."""
    stripped = text.lstrip("\ufeff").strip()
    return stripped if stripped.startswith(">") or not stripped else f">sequence_{number + 1}\n{stripped}"


def _members(bundle: zipfile.ZipFile, archive: Path) -> list[zipfile.ZipInfo]:
    """The archive's files, if their number and declared size are within the limits: a zip bomb is
    refused by its declared size, before anything expands."""
    members = [m for m in bundle.infolist() if not m.is_dir()]
    if len(members) > MAX_MEMBERS:
        raise ValueError(f"{archive.name}: {len(members)} files, more than {MAX_MEMBERS}; split it")
    declared = sum(member.file_size for member in members)
    if declared > MAX_UNPACKED_BYTES:
        raise ValueError(
            f"{archive.name}: expands to {declared / 2**30:.1f} GiB, more than {MAX_UNPACKED_BYTES >> 30} GiB"
        )
    return members


def _unpack(archive: Path, folder: Path, inputs: Inputs, texts: list[str]) -> None:
    try:
        with zipfile.ZipFile(archive) as bundle:
            try:
                members = _members(bundle, archive)
            except ValueError as error:
                inputs.skipped.append(str(error))
                return
            folder.mkdir(parents=True, exist_ok=True)
            for number, member in enumerate(members):
                name = Path(member.filename).name
                suffix = Path(name).suffix.lower()
                if name.startswith(".") or suffix not in (*IMAGE_SUFFIXES, *SEQUENCE_SUFFIXES):
                    inputs.skipped.append(f"{archive.name}/{member.filename}: not an image or sequence file")
                elif member.file_size > MAX_MEMBER_BYTES:
                    inputs.skipped.append(f"{archive.name}/{member.filename}: larger than {MAX_MEMBER_BYTES >> 20} MB")
                elif suffix in SEQUENCE_SUFFIXES:
                    texts.append(normalise_newlines(decode_line(as_utf8(bundle.read(member)))))
                else:
                    target = folder / f"{number:05d}" / name  # a folder per member keeps equal names apart
                    target.parent.mkdir()
                    target.write_bytes(bundle.read(member))
                    inputs.images.append(target)
    except zipfile.BadZipFile:
        inputs.skipped.append(f"{archive.name}: not a readable zip file")


def unpack_tree(archive: Path, folder: Path) -> list[str]:
    """A zip of labelled photos unpacked with its folders kept (species folders, or a CSV beside its
    images) into ``folder``; returns what was left out and why. A member that would land outside
    ``folder`` (absolute, ``..``), hidden files and folders (``__MACOSX``) and archives whose declared
    size or member count is too large are refused before anything is expanded."""
    left_out = []
    try:
        with zipfile.ZipFile(archive) as bundle:
            root = folder.resolve()
            for member in _members(bundle, archive):
                parts = Path(member.filename.replace("\\", "/")).parts
                if (
                    not parts
                    or member.filename.startswith("/")
                    or any(p in ("..", "") or p.startswith(".") or p == "__MACOSX" for p in parts)
                ):
                    left_out.append(f"{member.filename}: hidden, or a path outside the archive")
                    continue
                target = root.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(bundle.read(member))
    except zipfile.BadZipFile as error:
        raise ValueError(f"{archive.name}: not a readable zip file") from error
    return left_out


def data_root(folder: Path) -> Path:
    """The folder that holds the data: archives often wrap everything in one top folder."""
    children = [c for c in folder.iterdir() if not c.name.startswith(".")]
    if (
        len(children) == 1
        and children[0].is_dir()
        and not any(f.suffix.lower() in IMAGE_SUFFIXES for f in children[0].iterdir())
    ):
        return data_root(children[0])
    return folder
