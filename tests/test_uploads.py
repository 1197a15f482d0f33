"""Uploaded files sorted into queries: images, sequence files, zips (no member escapes), and the rest
listed with a reason."""

from __future__ import annotations

import io
import zipfile

from PIL import Image

from clibd_core.data.uploads import collect_inputs
from clibd_core.library.search import queries_from


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="JPEG")
    return buffer.getvalue()


def test_zip_members_stay_inside_and_everything_is_accounted_for(tmp_path):
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("../../escape.jpg", jpeg())
        bundle.writestr("plate/a.jpg", jpeg())
        bundle.writestr("other/a.jpg", jpeg())  # the same name twice: both kept
        bundle.writestr("seqs.fasta", ">s1\nACGTACGT\n")
        bundle.writestr("notes.docx", b"x")
    (tmp_path / "raw.txt").write_text("ACGTTT\n")
    (tmp_path / "table.xlsx").write_bytes(b"x")
    inputs = collect_inputs([archive, tmp_path / "raw.txt", tmp_path / "table.xlsx"], unpack_to=tmp_path / "out")
    assert len(inputs.images) == 3
    assert all((tmp_path / "out") in image.parents for image in inputs.images)
    assert not (tmp_path.parent / "escape.jpg").exists()
    assert ">s1\nACGTACGT" in inputs.barcode_text and ">sequence_2\nACGTTT" in inputs.barcode_text
    assert any("notes.docx" in reason for reason in inputs.skipped)
    assert any("table.xlsx" in reason for reason in inputs.skipped)
    queries = queries_from(inputs.barcode_text, inputs.images)
    assert [q.id for q in queries] == ["s1", "sequence_2", "escape", "a", "a (2)"]


def test_a_corrupt_zip_is_reported_not_raised(tmp_path):
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 not really")
    inputs = collect_inputs([broken])
    assert inputs.images == [] and "not a readable zip" in inputs.skipped[0]
