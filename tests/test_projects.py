"""Field projects on real databases (an SQLite file, and the test run's own PostgreSQL server): a plate
sheet with its real BOLD barcodes imported and identified end to end, a bad sheet refused with its row
report and nothing written, two reviewers on one specimen, a killed identification resumed, and a
database made by the first schema migrated to today's."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import zipfile

import pytest
from PIL import Image
from sqlalchemy import func, select, text

from clibd_core.projects import sheets
from clibd_core.projects.db import make_engine, session_scope, upgrade
from clibd_core.projects.identify import identify_project
from clibd_core.projects.intake import ImportRefused, import_files
from clibd_core.projects.registry import create_project, get_project
from clibd_core.projects.review import StaleEdit, get_specimen, project_status, review_specimen
from clibd_core.projects.schema import Base, IdentificationRecord, Specimen
from clibd_core.reference import DEFAULT_LIBRARY
from tests.plates import write_plates

CLI = [sys.executable, "-m", "clibd_core.cli", "project"]
needs_default = pytest.mark.skipif(
    not (DEFAULT_LIBRARY / "CURRENT").exists(), reason="the default library is not built (make test builds it)"
)


def clibd(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def machine_count(url: str) -> int:
    with session_scope(url) as session:
        return session.scalar(select(func.count()).where(IdentificationRecord.kind == "machine"))


# -- cells and sheets (no database) ---------------------------------------------------------------------
def test_cells_are_parsed_or_refused_with_the_reason():
    assert sheets.plate_and_well("BIOUG07077-F11") == ("BIOUG07077", "F11")
    assert sheets.plate_and_well("PLATE_3_a1") == ("PLATE_3", "A01")
    assert sheets.plate_and_well("CCDB-2024") == ("", "")
    assert sheets.parse_well(" h 12") == "H12"
    with pytest.raises(ValueError, match="8 × 12"):
        sheets.parse_well("I13")
    assert sheets.parse_date("12-Jul-2019") == "2019-07-12"
    assert sheets.parse_date("2019-07-01/2019-07-03") == "2019-07-01/2019-07-03"
    assert sheets.parse_date("25/06/2024") == "2024-06-25"
    with pytest.raises(ValueError, match="ambiguous"):
        sheets.parse_date("03/04/2019")
    with pytest.raises(ValueError, match="calendar"):
        sheets.parse_date("2019-02-30")
    assert sheets.parse_coordinate("45,5 S", "latitude") == -45.5
    with pytest.raises(ValueError, match="outside"):
        sheets.parse_coordinate("95", "latitude")


def test_bold_workbook_sheets_are_joined_and_columns_understood_in_any_spelling(tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    voucher = book.active
    voucher.title = "Voucher Info"
    voucher.append(["BOLD specimen data template: fill one row per specimen"])  # instructions above the header
    voucher.append(["Sample ID", "Field ID", "Museum ID", "Institution Storing"])
    voucher.append(["BIOUG07077-F11", "F-1", "M-1", "CBG"])
    collection = book.create_sheet("Collection Data")
    collection.append(["sample id", "COLLECTION DATE", "Country/Ocean", "lat", "Lon", "Collectors", "Exact Site"])
    collection.append(["BIOUG07077-F11", "12-Jul-2019", "Canada", "43.5", "-80.2", "J. Smith", "Trap 4"])
    book.save(tmp_path / "bold.xlsx")
    sheet = sheets.read_sheet(tmp_path / "bold.xlsx")
    assert len(sheet.rows) == 1 and sheet.row_numbers == ["Voucher Info row 3"]
    fields = {sheets.field_of(h): sheet.rows[0][h] for h in sheet.headers if sheets.field_of(h)}
    assert fields["event_date"] == "12-Jul-2019" and fields["latitude"] == "43.5" and fields["locality"] == "Trap 4"
    assert sheets.field_of("decimalLongitude") == "longitude" and sheets.field_of("Institution Storing") is None


# -- on a real database ----------------------------------------------------------------------------------
@needs_default
def test_plate_sheet_with_barcodes_is_imported_and_identified_end_to_end(database, tmp_path):
    plates = write_plates(tmp_path / "season", plates=1)
    with session_scope(database) as session:
        create_project(session, "season")
    plan = import_files("season", plates["sheet"], [plates["fasta"]], url=database)
    assert len(plan.specimens) == 96 and len(plan.barcodes) == 95 and not plan.errors

    summary = identify_project("season", url=database)
    assert summary["identified"] == 95 and summary["state"] == "done"
    with session_scope(database) as session:
        project = get_project(session, "season")
        status = project_status(session, project)
        specimen = get_specimen(session, project, "LAB00001-F11")
        assert (specimen.plate, specimen.well) == ("LAB00001", "F11")  # from the sample id
        assert specimen.event.latitude is not None and specimen.event.collector == "A. Field; B. Lab"
        assert specimen.extra["Notes"].startswith("night")  # a column the app does not know, kept as it came
        assert get_specimen(session, project, "LAB00001-H12").control  # "negative control" in the notes
        named = session.execute(
            select(Specimen.sample_id, IdentificationRecord.ranks)
            .join(IdentificationRecord, IdentificationRecord.id == Specimen.determination_id)
        ).all()
    assert status["specimens"] == 96 and status["controls"] == 1 and status["with_barcodes"] == 95
    assert status["identified"] == 95 and status["verified"] == 0
    right = sum(ranks["species"]["name"] == plates["truth"][sample]["species"] for sample, ranks in named)
    assert right >= 90  # real BOLD barcodes of species the library holds

    again = identify_project("season", url=database)  # nothing new for the same pair
    assert again["to_identify"] == 0 and machine_count(database) == 95
    # the same sheet and barcodes again: nothing is added twice
    repeat = import_files("season", plates["sheet"], [plates["fasta"]], url=database)
    assert not repeat.specimens and not repeat.barcodes and repeat.already == 96 + 95


def test_a_bad_sheet_is_refused_with_its_row_report_and_nothing_is_written(database, tmp_path):
    (tmp_path / "sheet.csv").write_text(
        "Sample ID,Plate,Well,Collection Date,Lat,Lon\n"
        "S-1,P1,A01,2024-06-01,45.5,-73.5\n"
        "S-2,P1,I13,2024-06-01,45.5,-73.5\n"  # no such well
        "S-3,P1,A02,31/31/2024,45.5,-73.5\n"  # no such date
        "S-4,P1,A03,2024-06-01,95,-73.5\n"  # latitude out of range
        "S-1,P1,A04,2024-06-01,45.5,-73.5\n"  # a repeated sample id
    )
    (tmp_path / "reads.fasta").write_text(">S-1\nACGTACGTACGT\n>NOBODY-9\nACGTACGT\n")
    assert clibd("create", "lab").returncode == 0
    result = clibd("import", "lab", tmp_path / "sheet.csv", tmp_path / "reads.fasta")
    assert result.returncode == 1
    for expected in ("row 3 (S-2): well 'I13'", "row 4 (S-3)", "row 5 (S-4): latitude 95", "S-1 repeats row 2",
                     "NOBODY-9", "nothing was imported"):  # fmt: skip
        assert expected in result.stderr, result.stderr
    with session_scope(database) as session:
        assert session.scalar(select(func.count()).select_from(Specimen)) == 0


def test_photos_from_zips_and_folders_find_their_specimens_by_file_name(database, tmp_path):
    (tmp_path / "sheet.csv").write_text("materialSampleID;eventDate;decimalLatitude;decimalLongitude\n"
                                        "M-1;2024-06-01;45.5;-73.5\nM-2;2024-06-02;45.5;-73.5\n")  # fmt: skip
    photos = tmp_path / "photos"
    (photos / "M-2").mkdir(parents=True)
    Image.new("RGB", (32, 32), "red").save(photos / "M-1_dorsal.jpg")
    Image.new("RGB", (32, 32), "blue").save(photos / "M-2" / "IMG_0001.jpg")  # matched by its folder
    Image.new("RGB", (32, 32), "green").save(tmp_path / "other.png")
    with zipfile.ZipFile(tmp_path / "more.zip", "w") as bundle:
        bundle.writestr("M-1 (2).png", (tmp_path / "other.png").read_bytes())
        bundle.writestr("stranger.jpg", (photos / "M-1_dorsal.jpg").read_bytes())
    with session_scope(database) as session:
        create_project(session, "trap")
    with pytest.raises(ImportRefused, match="stranger.jpg"):
        import_files("trap", tmp_path / "sheet.csv", [photos, tmp_path / "more.zip"], url=database)
    plan = import_files("trap", tmp_path / "sheet.csv", [photos, tmp_path / "more.zip"], skip_unmatched=True,
                        url=database)  # fmt: skip
    assert sorted(sample for sample, _, _ in plan.photos) == ["M-1", "M-1", "M-2"]
    again = import_files("trap", None, [photos], url=database)  # the same photos again: kept once
    assert not again.photos and again.already == 2
    with session_scope(database) as session:
        specimen = get_specimen(session, get_project(session, "trap"), "M-1")
        assert [q.kind for q in specimen.queries] == ["photo", "photo"]
        assert specimen.event.event_date == "2024-06-01"


@needs_default
def test_two_reviewers_on_one_specimen_lose_nothing(database, tmp_path):
    plates = write_plates(tmp_path / "season", plates=1, seed=3)
    with session_scope(database) as session:
        create_project(session, "season")
    import_files("season", plates["sheet"], [plates["fasta"]], url=database)
    identify_project("season", url=database)
    sample = next(s for s in plates["truth"] if s.endswith("A05"))
    with session_scope(database) as session:
        seen = get_specimen(session, get_project(session, "season"), sample).version  # both open it
    ana = review_specimen("season", sample, "ana", "agree", seen_version=seen, url=database)
    assert ana["status"] == "verified" and ana["determination"]["reviewer"] == "ana"
    with pytest.raises(StaleEdit, match="ana"):  # bob acts on what he saw before ana's agreement
        review_specimen("season", sample, "bob", "correct", "Diptera", "order", seen_version=seen, url=database)
    bob = review_specimen("season", sample, "bob", "correct", "Diptera", "order", seen_version=ana["version"],
                          url=database)  # fmt: skip
    humans = [i for i in bob["identifications"] if i["kind"] == "human"]
    assert [(h["reviewer"], h["action"]) for h in humans] == [("ana", "agree"), ("bob", "correct")]
    assert bob["determination"]["taxon"] == "Diptera" and len(bob["identifications"]) == 3  # the machine's too
    back = review_specimen("season", sample, "bob", "withdraw", url=database)
    assert back["determination"]["reviewer"] == "ana" and back["status"] == "verified"
    with session_scope(database) as session:
        agreement = project_status(session, get_project(session, "season"))["agreement"]
    assert agreement["species"]["compared"] == 1


@needs_default
@pytest.mark.slow
def test_a_killed_identification_leaves_whole_batches_and_resumes(database, tmp_path):
    plates = write_plates(tmp_path / "season", plates=1, seed=5)
    assert clibd("create", "season").returncode == 0
    assert clibd("import", "season", plates["sheet"], plates["fasta"]).returncode == 0
    process = subprocess.Popen([*CLI, "identify", "season", "--batch", "5"], stderr=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 240
    while machine_count(database) < 10 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stored = machine_count(database)
    assert 10 <= stored < 95 and stored % 5 == 0  # only whole batches, each in its transaction
    with session_scope(database) as session:
        statuses = dict(session.execute(select(Specimen.status, func.count()).group_by(Specimen.status)).all())
    assert statuses["machine"] == stored  # every stored identification is a determination, none half-made
    result = clibd("identify", "season", "--json")
    assert result.returncode == 0 and f'"identified": {95 - stored}' in result.stdout
    assert machine_count(database) == 95  # each specimen identified once


def test_a_database_of_the_first_schema_is_migrated_to_todays(database):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(database)
    upgrade(engine, "0001")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO project (name, title, description, created_at) "
                                "VALUES ('old', 'Old season', '', CURRENT_TIMESTAMP)"))  # fmt: skip
    upgrade(engine)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()
    with session_scope(database) as session:
        project = get_project(session, "old")
        assert project.title == "Old season" and project.licence == "" and project.contact == {}
        create_project(session, "new", watch=["Vespa velutina"])
    with session_scope(database) as session:
        assert [t.name for t in get_project(session, "new").watch_taxa] == ["Vespa velutina"]


@needs_default
def test_a_reviewed_project_is_published_as_a_darwin_core_archive_an_independent_reader_opens(database, tmp_path):
    from xml.etree import ElementTree

    from dwca.read import DwCAReader

    plates = write_plates(tmp_path / "season", plates=1, seed=7)
    assert clibd("create", "season").returncode == 0
    assert clibd("import", "season", plates["sheet"], plates["fasta"]).returncode == 0
    identify_project("season", url=database)
    samples = sorted(plates["truth"])
    review_specimen("season", samples[0], "ana", "agree", url=database)
    review_specimen("season", samples[1], "ana", "correct", "Diptera", "order", url=database)
    review_specimen("season", samples[2], "bob", "not_identifiable", url=database)
    archive = tmp_path / "season.zip"
    refused = clibd("export", "season", "--out", archive)
    assert refused.returncode == 2 and "GBIF needs the dataset's licence, contact name, contact email" in refused.stderr
    assert not archive.exists()
    assert clibd("set", "season", "--title", "Season 2026", "--licence", "CC-BY", "--contact-name", "Ana Field",
                 "--contact-email", "ana@example.org").returncode == 0  # fmt: skip
    result = clibd("export", "season", "--out", archive, "--json")
    assert result.returncode == 0, result.stderr
    assert '"unverified (no person has reviewed it)": 92' in result.stdout and '"a control well": 1' in result.stdout

    with DwCAReader(str(archive)) as dwca:
        rows = list(dwca)
        assert len(rows) == 2 and len({row.id for row in rows}) == 2
        names = {row.data[DWC + "materialSampleID"]: row.data for row in rows}
        corrected = names[samples[1]]
        assert corrected[DWC + "scientificName"] == "Diptera" and corrected[DWC + "taxonRank"] == "order"
        assert corrected[DWC + "family"] == "" and corrected[DWC + "genus"] == ""  # never deeper than stated
        assert corrected[DWC + "identifiedBy"] == "ana" and corrected[DWC + "basisOfRecord"] == "PreservedSpecimen"
        for row in rows:
            dna = [e for e in row.extensions if e.rowtype == "http://rs.gbif.org/terms/1.0/DNADerivedData"]
            history = [e for e in row.extensions if e.rowtype == DWC + "Identification"]
            assert len(dna) == 1 and dna[0].data["https://w3id.org/mixs/0000044"] == "COI"
            assert set(dna[0].data["http://rs.gbif.org/terms/dna_sequence"]) <= set("ACGTN")
            assert {h.data[DWC + "identifiedBy"].split()[0] for h in history} == {"CLIBD", "ana"}
        eml = ElementTree.fromstring(dwca.open_included_file("eml.xml").read())
        assert eml.find("dataset/title").text == "Season 2026"
    with zipfile.ZipFile(archive) as bundle:  # structure: UTF-8, every coreid resolves, column counts
        core_ids = {line.split("\t")[0] for line in bundle.read("occurrence.txt").decode("utf-8").splitlines()[1:]}
        for name in ("occurrence.txt", "dna.txt", "identification.txt", "measurementorfact.txt"):
            lines = bundle.read(name).decode("utf-8").splitlines()
            assert len({len(line.split("\t")) for line in lines}) == 1, name
            if name != "occurrence.txt":
                assert {line.split("\t")[0] for line in lines[1:]} <= core_ids, name


DWC = "http://rs.tdwg.org/dwc/terms/"


@needs_default
@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # training does not depend on the database
def test_verified_records_train_the_next_model_which_keeps_what_it_learned_from(database, tmp_path):
    import json

    from clibd_core.reference import DEFAULT_MODEL

    plates = write_plates(tmp_path / "season", plates=1, seed=17)
    with session_scope(database) as session:
        create_project(session, "season")
    import_files("season", plates["sheet"], [plates["fasta"]], url=database)
    identify_project("season", url=database)
    verified = sorted(plates["truth"])[:30]
    for sample in verified:
        review_specimen("season", sample, "ana", "agree", url=database)
    run = tmp_path / "run"
    result = subprocess.run([*CLI[:-1], "train", "--project", "season", "--verified", "--out", run, "--init-from",
                             DEFAULT_MODEL, "--epochs", "1", "--batch-size", "16"], capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "training on 30 verified specimens of season" in result.stdout
    learned = json.loads((run / "best" / "learned_from.json").read_text())
    assert learned["project"] == "season" and learned["modalities"] == ["dna", "text"]
    assert sorted(r["sample_id"] for r in learned["records"]) == verified
    assert (run / "best" / "config.json").is_file()
    refused = subprocess.run([*CLI[:-1], "train", "--project", "season", "--out", tmp_path / "r2"], capture_output=True,
                             text=True)  # fmt: skip
    assert refused.returncode == 2 and "--verified" in refused.stderr


def test_a_trap_folder_becomes_events_by_the_time_between_photos(database, tmp_path):
    from clibd_core.projects.trap import import_trap

    trap = tmp_path / "trap"
    (trap / "2026-06-14").mkdir(parents=True)
    for name in ("20260612_221503.jpg", "20260612_235900.jpg", "20260613_013000.jpg"):  # one night
        Image.new("RGB", (24, 24), "white").save(trap / name)
    Image.new("RGB", (24, 24), "grey").save(trap / "2026-06-14" / "IMG_0001.jpg")  # the folder's day: another event
    (tmp_path / "deployment.csv").write_text("Site,Lat,Lon,Sampling Protocol\nRoof trap,45.5,-73.6,light trap UV\n")
    Image.new("RGB", (24, 24), "black").save(trap / "no_time.jpg")
    with session_scope(database) as session:
        create_project(session, "trap")
    with pytest.raises(ImportRefused, match="no_time.jpg: no time"):
        import_trap("trap", trap, tmp_path / "deployment.csv", url=database)
    (trap / "no_time.jpg").unlink()
    plan = import_trap("trap", trap, tmp_path / "deployment.csv", url=database)
    assert len(plan.specimens) == 4 and len(plan.photos) == 4
    with session_scope(database) as session:
        night = get_specimen(session, get_project(session, "trap"), "20260613_013000").event
        other = get_specimen(session, get_project(session, "trap"), "IMG_0001").event
        assert night.event_date == "2026-06-12/2026-06-13" and night.event_time == "22:15/01:30"
        assert night.site == "Roof trap" and night.latitude == 45.5 and night.method == "light trap UV"
        assert other.id != night.id and other.event_date == "2026-06-14"
