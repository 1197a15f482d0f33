"""Bad files as users produce them: text in any common encoding, hostile images, bombs, arbitrary bytes."""

from __future__ import annotations

import gzip
import struct
import zipfile
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from clibd_core.data import uploads
from clibd_core.data.bold import read_bold_tsv, read_fasta
from clibd_core.data.folder import read_image_folder
from clibd_core.data.transforms import ImageError, open_image
from clibd_core.dna import parse_sequences
from clibd_core.textio import TextError, read_bytes, read_text
from tests.test_dna import COI

FASTA = f">first specimen\n{COI}\n>second|Diptera\n{COI[:400]}\n"


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: text.encode("utf-8"),
        lambda text: b"\xef\xbb\xbf" + text.encode("utf-8"),
        lambda text: text.encode("utf-16"),  # with its BOM, as Windows Notepad's "Unicode"
        lambda text: b"\xfe\xff" + text.encode("utf-16-be"),
        lambda text: text.encode("utf-16-le"),  # no BOM
        lambda text: text.encode("cp1252"),
        lambda text: text.replace("\n", "\r\n").encode("utf-8"),
        lambda text: text.replace("\n", "\r").encode("utf-8"),  # classic Mac line ends
        lambda text: gzip.compress(text.encode("utf-16")),
    ],
)
def test_fasta_reads_the_same_in_every_common_encoding(encode, tmp_path):
    path = tmp_path / "q.fasta"
    path.write_bytes(encode(FASTA))
    assert parse_sequences(read_text(path)) == [("first", COI), ("second", COI[:400])]
    assert [r.id for r in read_fasta(path).records] == ["first", "second"]


def test_control_characters_never_reach_an_id(tmp_path):
    path = tmp_path / "q.fasta"
    path.write_bytes(b">bad\x00id\x07 x\n" + COI.encode() + b"\n")
    [(record_id, _)] = parse_sequences(read_text(path))
    assert record_id == "badid"
    assert all(c.isprintable() for c in parse_sequences(">a\x01b\x1bc\n" + COI)[0][0])


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` × ``height`` (a decompression bomb's signature)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_huge_truncated_and_fake_images_are_refused_with_their_reason(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(20_000, 20_000))
    with pytest.raises(ImageError, match="too large"):
        open_image(bomb)
    Image.new("RGB", (64, 64), "green").save(tmp_path / "ok.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "ok.jpg").read_bytes()[:200])
    with pytest.raises(ImageError, match="cut.jpg"):
        open_image(tmp_path / "cut.jpg")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageError, match="not a readable image"):
        open_image(tmp_path / "text.png")


def test_gif_and_bmp_are_images_for_uploads_and_the_cli(tmp_path):
    for suffix in (".gif", ".bmp"):
        Image.new("RGB", (32, 32), "red").save(tmp_path / f"photo{suffix}")
        assert open_image(tmp_path / f"photo{suffix}").size == (32, 32)
    inputs = uploads.collect_inputs([tmp_path / "photo.gif", tmp_path / "photo.bmp"])
    assert len(inputs.images) == 2 and not inputs.skipped


def test_bombs_are_refused_by_their_declared_size(tmp_path, monkeypatch):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("a.fasta", ">a\n" + "A" * 5000)
    monkeypatch.setattr(uploads, "MAX_UNPACKED_BYTES", 1000)
    inputs = uploads.collect_inputs([archive], unpack_to=tmp_path / "out")
    assert "expands to" in inputs.skipped[0] and not (tmp_path / "out").exists()
    monkeypatch.setattr("clibd_core.textio.MAX_TEXT_BYTES", 1000)
    (tmp_path / "big.gz").write_bytes(gzip.compress(b"A" * 5000))
    with pytest.raises(TextError, match="more than"):
        read_bytes(tmp_path / "big.gz")


BOLD_HEADER = b"processid\tspecies_name\tgenus_name\tfamily_name\torder_name\tmarkercode\tnucleotides\n"
HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def accounts_for_every_row(result, rows: int) -> bool:
    """Every data row is read or skipped with a reason (blank lines may be neither)."""
    return all(s.reason for s in result.skipped) and len(result.records) <= rows


@HYPOTHESIS
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_crash_the_fasta_reader(tmp_path, data):
    path = tmp_path / "any.fasta"
    path.write_bytes(b">x\n" + data)
    result = read_fasta(path)
    assert accounts_for_every_row(result, data.count(b">") + 1)
    assert all(r.id.isprintable() for r in result.records)


@HYPOTHESIS
@given(st.lists(st.binary(max_size=200), max_size=30))
def test_arbitrary_rows_never_crash_the_bold_reader(tmp_path, rows):
    path = tmp_path / "any.tsv"
    path.write_bytes(BOLD_HEADER + b"\n".join(rows))
    result = read_bold_tsv(path)
    assert accounts_for_every_row(result, len(rows))
    assert len(result.records) + len(result.skipped) >= sum(bool(row.strip()) for row in rows) - 1


@HYPOTHESIS
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash_the_image_csv_reader(tmp_path, data):
    path = tmp_path / "labels.csv"
    path.write_bytes(b"file,order,family,genus,species\n" + data)
    assert accounts_for_every_row(read_image_folder(path), data.count(b"\n") + 1)
