"""The app through its HTTP API (gradio_client), as a browser would drive it: identify by barcode, by
image and both, bad input, batch with downloads, the map, library import and activation, and a training
job started, watched, aborted and used — on the shipped demo and tiny synthetic worlds."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from gradio_client import Client, handle_file

from clibd_core.data.synthetic import WorldConfig, generate_world
from clibd_core.library.store import Library
from clibd_core.ui.figures import barcode_stripe
from clibd_core.ui.session import pair_banner
from clibd_core.workspace import DEMO_LIBRARY

pytestmark = pytest.mark.skipif(not (DEMO_LIBRARY / "CURRENT").exists(), reason="reference_db/ is not built")
DEMO_QUERIES = DEMO_LIBRARY.parent / "demo_queries.parquet"


@pytest.fixture()
def client(app_url) -> Client:
    return Client(app_url, verbose=False)  # a fresh session per test


@pytest.fixture(scope="module")
def demo_queries() -> pd.DataFrame:
    return pd.read_parquet(DEMO_QUERIES)


@pytest.fixture(scope="module")
def reference_photo(tmp_path_factory) -> tuple[Path, dict]:
    """A demo reference's photo (its stored thumbnail) and its lineage."""
    library = Library.open(DEMO_LIBRARY)
    row = int(library.rows["image"][7])
    path = tmp_path_factory.mktemp("photo") / "specimen.jpg"
    path.write_bytes(library.thumbnails([row])[row])
    return path, library.metadata.iloc[row].to_dict()


def identify(client, images=(), barcodes="", k=10):
    return client.predict(
        [handle_file(str(p)) for p in images], barcodes, None, k, "", "", "auto", api_name="/identify"
    )


def test_barcode_stripe_colours_each_base():
    stripe = barcode_stripe("ACGTN", width=5, height=2)
    assert stripe.size == (5, 2)
    assert [stripe.getpixel((x, 0)) for x in range(5)] == [
        (46, 160, 67),
        (31, 111, 235),
        (240, 160, 30),
        (210, 50, 50),
        (170, 170, 170),
    ]


def test_identify_by_barcode(client, demo_queries):
    query = demo_queries[demo_queries["split"] == "test"].iloc[0]
    headline, lineage, neighbours, gallery, stripe, table, _ = identify(
        client, barcodes=f">{query.id}\n{query.barcode}"
    )
    assert headline.startswith(f"## {query.id}")
    assert [row[0] for row in lineage["data"]] == ["order", "family", "genus", "species"]
    assert lineage["data"][2][1] == query.text.split()[2]  # the right genus
    assert len(neighbours["data"]) == 10 and all(row[-1] is not None for row in neighbours["data"])  # % identity
    assert gallery and stripe.startswith('<div class="barcode-stripe"') and "data:image/png;base64," in stripe
    assert table["data"][0][1] == "barcode"


def test_identify_by_image_and_by_both(client, reference_photo, demo_queries):
    photo, lineage = reference_photo
    headline, rows, neighbours, gallery, stripe, table, _ = identify(client, images=[photo])
    assert table["data"][0][1] == "image"
    assert rows["data"][0][1] == lineage["order"]
    assert lineage["id"] in [row[1] for row in neighbours["data"]]  # the photo finds its own specimen
    assert stripe == "" and len(gallery) >= 1
    demo = Library.open(DEMO_LIBRARY)
    [barcode] = demo.barcodes.take(demo.metadata.index[demo.metadata["id"] == lineage["id"]])
    headline, rows, *_, table, _ = identify(client, images=[photo], barcodes=barcode)
    assert table["data"][0][1] == "image+barcode"
    assert "Image and barcode:" in headline


def test_bad_input_is_reported_and_the_app_stays_up(client, tmp_path, demo_queries):
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    table = identify(client, images=[corrupt])[5]
    assert "broken" in table["data"][0][5]
    table = identify(client, barcodes=">protein\nMKTAYIAKQRQISFVKSHFSRQLEERLGLIEV\n>empty\n")[5]
    errors = {row[0]: row[5] for row in table["data"]}
    assert "nucleotide" in errors["protein"] and "empty" in errors["empty"]
    with pytest.raises(Exception, match="Give an image"):
        identify(client)
    query = demo_queries.iloc[3]
    assert identify(client, barcodes=query.barcode)[5]["data"][0][5] == ""  # still answering


def test_batch_of_barcodes_and_a_zip_of_images(client, demo_queries, reference_photo, tmp_path):
    fasta = tmp_path / "many.fasta"
    fasta.write_text("".join(f">{q.id}\n{q.barcode}\n" for q in demo_queries.head(150).itertuples()) + ">bad\nXYZ\n")
    bundle = tmp_path / "photos.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.write(reference_photo[0], "a/one.jpg")
        archive.write(reference_photo[0], "b/two.jpg")
        archive.writestr("notes.docx", b"not an image")
    table, downloads, note = client.predict(
        [handle_file(str(fasta)), handle_file(str(bundle))], 10, "", "", api_name="/batch"
    )
    assert len(table["data"]) == 153
    assert "left out photos.zip/notes.docx" in note
    files = {Path(f).suffix: Path(f) for f in downloads if "embeddings" not in f and "neighbours" not in f}
    assert len(downloads) == 5  # results and neighbours as CSV and as Parquet, embeddings Parquet
    results = pd.read_csv(files[".csv"], comment="#")
    assert results["error"].fillna("").str.len().gt(0).sum() == 1
    assert files[".csv"].read_text().startswith("# model_fingerprint:")
    embeddings = pd.read_parquet(next(f for f in downloads if "embeddings" in f))
    assert list(embeddings.columns[:2]) == ["uuid", "emb"] and len(embeddings["emb"].iloc[0]) == 256


def test_explore_draws_the_map_with_the_last_query(client, demo_queries):
    identify(client, barcodes=demo_queries.iloc[0].barcode)
    figure, neighbours, _ = client.predict("dna", "order", demo_queries.iloc[0].text.split()[0], api_name="/explore")
    traces = figure["plot"] if isinstance(figure, dict) and "plot" in figure else figure
    assert "star" in str(traces) and len(neighbours["data"]) == 10


def test_import_a_library_and_make_it_active(client, tmp_path, home):
    world = tmp_path / "world"
    generate_world(world, WorldConfig(n_records=60, n_orders=2, seed=3))
    message, libraries, *_ = client.predict(
        None, str(world), "tiny world", str(DEMO_LIBRARY.parent / "model"), "auto", api_name="/import_library"
    )
    assert "built **tiny world**: 60 records" in message
    assert str(home / "libraries" / "tiny_world") in [row[1] for row in libraries["data"]]
    banner = client.predict(str(home / "libraries" / "tiny_world"), "", api_name="/activate")
    assert "tiny world" in banner and "synthetic demo world" not in banner
    with pytest.raises(Exception, match="exists"):
        client.predict(
            None, str(world), "tiny world", str(DEMO_LIBRARY.parent / "model"), "auto", api_name="/import_library"
        )


@pytest.mark.slow
def test_train_start_progress_abort_and_use(client, tmp_path, home):
    world = tmp_path / "world"
    config = WorldConfig(
        n_records=200, n_orders=2, families_per_order=1, genera_per_family=2, species_per_genus=2, seed=4
    )
    generate_world(world, config)  # 8 species of ~25 records: every split has queries
    # Barcodes and taxonomy: the tab's photo runs have their own test (tests/test_photos.py).
    form = [str(world), "lite", ["dna", "text"], 200, 16, None, ["text_backbone"], ""]
    assert "started **long**" in client.predict("long", *form, api_name="/train_start")
    with pytest.raises(Exception, match="already running"):
        client.predict("second", *form, api_name="/train_start")
    deadline = time.time() + 240
    while time.time() < deadline:
        text, *_ = client.predict(api_name="/train_progress")
        if ": running" in text and "step 0 " not in text:
            break
        time.sleep(1)
    assert ": running" in text
    assert "abort requested" in client.predict(api_name="/train_abort")
    while time.time() < deadline and ": cancelled" not in text:
        time.sleep(1)
        text, *_ = client.predict(api_name="/train_progress")
    assert ": cancelled" in text
    form[3] = 1
    assert "started **short**" in client.predict("short", *form, api_name="/train_start")
    while time.time() < deadline + 240 and ": finished" not in text:
        time.sleep(2)
        text, plot, log, evaluation, run_dir = client.predict(api_name="/train_progress")
    assert ": finished" in text and plot is not None and "dna->dna" in evaluation
    banner = client.predict(run_dir, "", "short library", api_name="/use_model")
    assert "short library" in banner and "short/best" in banner
    answer = identify(client, barcodes=Library.open(home / "libraries" / "short_library").barcodes.take([0])[0])
    assert answer[5]["data"][0][5] == ""


def test_the_demo_is_labelled_as_synthetic(home):
    banner = pair_banner([str(DEMO_LIBRARY), str(DEMO_LIBRARY.parent / "model")])
    assert "Demo library" in banner and "synthetic demo world, not real insects" in banner


HOSTILE = {
    "random.bin": bytes(range(256)) * 40,
    "empty.fasta": b"",
    "nul.fasta": b"\x00" * 2000,
    "utf16.fasta": "\ufeff>a\nACGT\n".encode("utf-16-le"),
    "not_a_zip.zip": b"PK\x03\x04 truncated",
    "not_a_gzip.tsv.gz": b"\x1f\x8b\x08 truncated",
    "text.jpg": b"this is not a photo",
    "huge.png": bytes.fromhex("89504e470d0a1a0a0000000d49484452")
    + (60000).to_bytes(4, "big") * 2
    + b"\x08\x02\x00\x00\x00",
    "bad.xlsx": b"PK\x05\x06" + b"\x00" * 18,
    "best.pth": b"not a checkpoint",
}
VAGUE = "has not enabled verbose error reporting"


def test_hostile_files_through_every_endpoint_get_words_and_the_app_stays_up(client, tmp_path, demo_queries):
    """Each hostile file into each endpoint that takes files: an answer, or a refusal in words (Gradio's
    vague "upstream … exception" means an error escaped a handler)."""
    files = {}
    for name, content in HOSTILE.items():
        files[name] = tmp_path / name
        files[name].write_bytes(content)
    client.predict("hostile season", api_name="/project_create")
    calls = {
        "identify images": lambda f: client.predict([handle_file(str(f))], "", None, 10, "", "", "auto", api_name="/identify"),
        "identify FASTA": lambda f: client.predict([], "", handle_file(str(f)), 10, "", "", "auto", api_name="/identify"),
        "batch": lambda f: client.predict([handle_file(str(f))], 10, "", "", api_name="/batch"),
        "read photos": lambda f: client.predict(handle_file(str(f)), "", api_name="/read_photos"),
        "import library": lambda f: client.predict(handle_file(str(f)), "", "hostile", "", "auto", api_name="/import_library"),
        "import checkpoint": lambda f: client.predict(handle_file(str(f)), "", "hostile", api_name="/import_checkpoint"),
        "project import": lambda f: client.predict("hostile season", [handle_file(str(f))], "", False, api_name="/project_check_import"),
    }  # fmt: skip
    vague = []
    for endpoint, call in calls.items():
        for name, path in files.items():
            try:
                call(path)
            except Exception as error:  # noqa: BLE001 - every refusal is inspected for its words
                if VAGUE in str(error) or not str(error).strip():
                    vague.append(f"{endpoint} ← {name}")
    assert not vague, vague
    assert identify(client, barcodes=demo_queries.iloc[0].barcode)[5]["data"][0][5] == ""  # still answering
