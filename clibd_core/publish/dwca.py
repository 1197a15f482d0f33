"""A GBIF-ready Darwin Core Archive of a project: occurrence.txt (the core), the DNA derived data,
Identification History and MeasurementOrFact extensions, meta.xml and eml.xml, zipped atomically.

Term IRIs are those of the published definitions: Darwin Core (http://rs.tdwg.org/dwc/terms/), GBIF's
DNA derived data extension of 2024-07-11 (rs.gbif.org/extension/gbif/1.0/dna_derived_data_2024-07-11.xml:
MIxS IRIs for target_gene, target_subfragment and seq_meth, GBIF's for the sequence and the primers).
A name is published at the rank that was stated, never deeper. Written with the standard library
(csv-like tab text, zipfile, ElementTree): the archive is a few plain files, and the tests read it back
with an independent reader (python-dwca-reader).
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree as ET

from clibd_core.dna import clean_sequence
from clibd_core.fileio import atomic_file
from clibd_core.projects.db import ProjectError, session_scope
from clibd_core.projects.intake import media_dir
from clibd_core.projects.registry import get_project
from clibd_core.projects.review import standing
from clibd_core.projects.schema import IdentificationRecord, Project, Specimen
from clibd_core.projects.sheets import canonical
from clibd_core.publish.selection import publishable

DWC = "http://rs.tdwg.org/dwc/terms/"
DC = "http://purl.org/dc/terms/"
GBIF = "http://rs.gbif.org/terms/"
MIXS = "https://w3id.org/mixs/"
OCCURRENCE = DWC + "Occurrence"
DNA_DERIVED = "http://rs.gbif.org/terms/1.0/DNADerivedData"
IDENTIFICATION = DWC + "Identification"
MEASUREMENT = DWC + "MeasurementOrFact"
LICENCES = {
    "cc0": "http://creativecommons.org/publicdomain/zero/1.0/legalcode",
    "cc-by": "http://creativecommons.org/licenses/by/4.0/legalcode",
    "cc-by-nc": "http://creativecommons.org/licenses/by-nc/4.0/legalcode",
}
LICENCE_NAMES = {"cc0": "CC0 1.0", "cc-by": "CC BY 4.0", "cc-by-nc": "CC BY-NC 4.0"}
CORE_TERMS = [
    ("occurrenceID", DWC), ("basisOfRecord", DWC), ("occurrenceStatus", DWC), ("scientificName", DWC),
    ("taxonRank", DWC), ("kingdom", DWC), ("phylum", DWC), ("class", DWC), ("order", DWC), ("family", DWC),
    ("genus", DWC), ("verbatimIdentification", DWC), ("identifiedBy", DWC), ("dateIdentified", DWC),
    ("identificationVerificationStatus", DWC), ("identificationRemarks", DWC), ("identificationReferences", DWC),
    ("eventDate", DWC), ("eventTime", DWC), ("decimalLatitude", DWC), ("decimalLongitude", DWC),
    ("geodeticDatum", DWC), ("coordinateUncertaintyInMeters", DWC), ("country", DWC), ("countryCode", DWC),
    ("stateProvince", DWC), ("locality", DWC), ("recordedBy", DWC), ("samplingProtocol", DWC),
    ("catalogNumber", DWC), ("materialSampleID", DWC), ("fieldNumber", DWC), ("associatedMedia", DWC),
    ("license", DC),
]  # fmt: skip
DNA_TERMS = [
    ("occurrenceID", DWC + "occurrenceID"),
    ("DNA_sequence", GBIF + "dna_sequence"),
    ("target_gene", MIXS + "0000044"),
    ("target_subfragment", MIXS + "0000045"),
    ("pcr_primer_forward", GBIF + "pcr_primer_forward"),
    ("pcr_primer_reverse", GBIF + "pcr_primer_reverse"),
    ("pcr_primer_name_forward", GBIF + "pcr_primer_name_forward"),
    ("pcr_primer_name_reverse", GBIF + "pcr_primer_name_reverse"),
    ("pcr_primer_reference", GBIF + "pcr_primer_reference"),
    ("seq_meth", MIXS + "0000050"),
]
IDENTIFICATION_TERMS = [
    "identificationID", "scientificName", "taxonRank", "verbatimIdentification", "identifiedBy", "dateIdentified",
    "identificationVerificationStatus", "identificationRemarks", "identificationReferences",
]  # fmt: skip
MEASUREMENT_TERMS = [
    "measurementID", "measurementType", "measurementValue", "measurementUnit", "measurementDeterminedBy",
    "measurementDeterminedDate", "measurementMethod", "measurementRemarks",
]  # fmt: skip
# Sheet columns (any spelling) that carry the primers and the sequencing method.
PRIMER_COLUMNS = {
    "pcr_primer_forward": ("pcrprimerforward", "primerforward", "forwardprimer", "fwdprimer"),
    "pcr_primer_reverse": ("pcrprimerreverse", "primerreverse", "reverseprimer", "revprimer"),
    "pcr_primer_name_forward": ("pcrprimernameforward", "forwardprimername", "primernameforward", "fwdprimername"),
    "pcr_primer_name_reverse": ("pcrprimernamereverse", "reverseprimername", "primernamereverse", "revprimername"),
    "pcr_primer_reference": ("pcrprimerreference", "primerreference"),
    "seq_meth": ("seqmeth", "sequencingmethod"),
}
REFERENCES = "CLIBD (Gong et al., ICLR 2025): https://openreview.net/forum?id=d5HUnyByAI"


@dataclass
class ExportReport:
    path: Path
    occurrences: int
    sequences: int
    identifications: int
    measurements: int
    left_out: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> dict:
        reasons: dict[str, int] = {}
        for _, why in self.left_out:
            reasons[why] = reasons.get(why, 0) + 1
        return {
            "archive": str(self.path), "occurrences": self.occurrences, "dna_sequences": self.sequences,
            "identifications": self.identifications, "measurements": self.measurements,
            "left_out": len(self.left_out), "left_out_by_reason": reasons,
        }  # fmt: skip


def licence_url(licence: str) -> str:
    key = canonical(licence).replace("40", "").replace("10", "")
    key = {"cc0": "cc0", "ccby": "cc-by", "ccbync": "cc-by-nc"}.get(key, "")
    if not key:
        raise ProjectError(f"licence '{licence}' is not one GBIF accepts: CC0, CC-BY or CC-BY-NC (4.0)")
    return LICENCES[key]


def _clean(value: object) -> str:
    """A cell of tab-separated text: no tab, no line break, no control character."""
    if value is None:
        return ""
    text = f"{value:.6f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    return re.sub(r"[\t\r\n\x00-\x1f]+", " ", text).strip()


def _occurrence_id(project: Project, specimen: Specimen) -> str:
    return f"urn:clibd:{canonical(project.name) or 'project'}:{specimen.sample_id}"


def _who(record: IdentificationRecord) -> str:
    return record.reviewer if record.kind == "human" else f"CLIBD model {record.model_fingerprint[:12]}"


def _remarks(record: IdentificationRecord) -> str:
    if record.kind == "human":
        return "; ".join(x for x in (f"{record.action} by a person", record.remarks) if x)
    confidence = record.ranks.get(record.rank, {}).get("confidence")
    parts = [
        f"machine identification ({record.query_type}) by CLIBD, library {record.library} {record.library_version}",
        f"model {record.model_fingerprint[:12]}",
        f"confidence at {record.rank} {confidence:.3f}" if confidence is not None else "no rank stated",
        f"novelty {record.novelty:.3f}" if record.novelty is not None else "",
        f"nearest BIN {record.bin} at {record.bin_identity} % identity" if record.bin else "",
    ]
    return "; ".join(p for p in parts if p)


def _verification(specimen: Specimen) -> str:
    humans = standing(specimen.identifications)
    if humans:
        return f"verified by {', '.join(dict.fromkeys(h.reviewer for h in humans))}"
    return "unverified: machine identification"


def _basis(specimen: Specimen) -> str:
    kinds = {q.kind for q in specimen.queries}
    if "barcode" in kinds:
        return "PreservedSpecimen"  # a vouchered, barcoded specimen
    if specimen.status == "machine":
        return "MachineObservation"  # a photo named by the model alone
    return "PreservedSpecimen"


def _core_row(project: Project, specimen: Specimen, photos: list[str]) -> list[str]:
    record = specimen.determination
    event = specimen.event
    lineage = record.lineage
    given = specimen.given_taxonomy
    values = {
        "occurrenceID": _occurrence_id(project, specimen),
        "basisOfRecord": _basis(specimen),
        "occurrenceStatus": "present",
        "scientificName": record.taxon,
        "taxonRank": record.rank,
        "kingdom": "Animalia",
        "phylum": given.get("phylum", "Arthropoda"),
        "class": given.get("class", "Insecta"),
        "order": lineage.get("order", ""),
        "family": lineage.get("family", ""),
        "genus": lineage.get("genus", ""),
        "verbatimIdentification": given.get("species") or given.get("genus") or record.taxon,
        "identifiedBy": _who(record),
        "dateIdentified": record.created_at.date().isoformat(),
        "identificationVerificationStatus": _verification(specimen),
        "identificationRemarks": _remarks(record),
        "identificationReferences": REFERENCES,
        "eventDate": event.event_date,
        "eventTime": event.event_time,
        "decimalLatitude": event.latitude,
        "decimalLongitude": event.longitude,
        "geodeticDatum": "WGS84",
        "coordinateUncertaintyInMeters": event.coordinate_uncertainty_m,
        "country": event.country,
        "countryCode": event.country_code,
        "stateProvince": event.state_province,
        "locality": event.locality or event.site,
        "recordedBy": event.collector.replace(";", " |"),  # Darwin Core separates people with " | "
        "samplingProtocol": event.method,
        "catalogNumber": specimen.museum_id,
        "materialSampleID": specimen.sample_id,
        "fieldNumber": specimen.field_id,
        "associatedMedia": " | ".join(photos),
        "license": licence_url(project.licence),
    }
    return [_clean(values[name]) for name, _ in CORE_TERMS]


def _primers(specimen: Specimen) -> dict[str, str]:
    found = {}
    by_key = {canonical(k): v for k, v in specimen.extra.items()}
    for term, spellings in PRIMER_COLUMNS.items():
        found[term] = next((by_key[s] for s in spellings if by_key.get(s)), "")
    return found


def _dna_rows(occurrence: str, specimen: Specimen) -> list[list[str]]:
    rows, primers = [], _primers(specimen)
    for query in specimen.queries:
        if query.kind != "barcode":
            continue
        try:
            sequence = clean_sequence(query.sequence, specimen.sample_id)
        except ValueError:
            continue  # a barcode that could not be used is not published as data
        marker = query.marker or "COI-5P"
        values = {"occurrenceID": occurrence, "DNA_sequence": sequence, "target_gene": marker.split("-")[0],
                  "target_subfragment": marker, **primers}  # fmt: skip
        rows.append([occurrence, *(_clean(values.get(name, "")) for name, _ in DNA_TERMS)])
    return rows


def _identification_rows(occurrence: str, specimen: Specimen) -> list[list[str]]:
    rows = []
    for record in specimen.identifications:
        status = "current determination" if record is specimen.determination else ""
        if record.withdrawn_at is not None:
            status = f"withdrawn {record.withdrawn_at.date().isoformat()}"
        values = [
            f"{occurrence}:identification:{record.id}", record.taxon or "(no rank stated)", record.rank,
            record.taxon, _who(record), record.created_at.date().isoformat(),
            status or ("human identification" if record.kind == "human" else "machine identification"),
            _remarks(record), REFERENCES if record.kind == "machine" else "",
        ]  # fmt: skip
        rows.append([occurrence, *map(_clean, values)])
    return rows


def _measurement_rows(occurrence: str, specimen: Specimen) -> list[list[str]]:
    machine = next((i for i in reversed(specimen.identifications) if i.kind == "machine"), None)
    if machine is None:
        return []
    method = f"CLIBD, library {machine.library} {machine.library_version}, model {machine.model_fingerprint[:12]}"
    day = machine.created_at.date().isoformat()
    facts = [(f"calibrated confidence at {rank} ({call['name']})", call["confidence"], "")
             for rank, call in machine.ranks.items()]  # fmt: skip
    if machine.novelty is not None:
        facts.append(("novelty (probability the species is absent from the library)", machine.novelty, ""))
    if machine.top_identity is not None:
        facts.append(("identity to the nearest reference barcode", machine.top_identity, "%"))
    return [
        [occurrence, *map(_clean, (f"{occurrence}:machine:{machine.id}:{n}", kind, value, unit,
                                   _who(machine), day, method, ""))]
        for n, (kind, value, unit) in enumerate(facts)
    ]  # fmt: skip


def eml(project: Project) -> bytes:
    """GBIF's EML profile: title, creator, contact, abstract, licence (refused when one is missing)."""
    contact = project.contact or {}
    needed = {"title": project.title, "licence": project.licence, "contact name": contact.get("name"),
              "contact email": contact.get("email")}  # fmt: skip
    missing = [name for name, value in needed.items() if not value]
    if missing:
        raise ProjectError(
            f"GBIF needs the dataset's {', '.join(missing)}: set them with clibd project set {project.name} "
            "--title … --licence CC-BY --contact-name … --contact-email …"
        )
    root = ET.Element("eml:eml", {
        "xmlns:eml": "eml://ecoinformatics.org/eml-2.1.1", "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
        "xsi:schemaLocation": "eml://ecoinformatics.org/eml-2.1.1 http://rs.gbif.org/schema/eml-gbif-profile/1.2/eml.xsd",
        "packageId": f"urn:clibd:{canonical(project.name)}:{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}",
        "system": "CLIBD app", "xml:lang": "en",
    })  # fmt: skip
    dataset = ET.SubElement(root, "dataset")
    ET.SubElement(dataset, "title", {"xml:lang": "en"}).text = project.title
    for role in ("creator", "metadataProvider"):
        person = ET.SubElement(dataset, role)
        name = ET.SubElement(person, "individualName")
        ET.SubElement(name, "surName").text = contact["name"]
        if contact.get("organisation"):
            ET.SubElement(person, "organizationName").text = contact["organisation"]
        ET.SubElement(person, "electronicMailAddress").text = contact["email"]
    ET.SubElement(dataset, "pubDate").text = datetime.now(UTC).date().isoformat()
    ET.SubElement(dataset, "language").text = "en"
    abstract = ET.SubElement(dataset, "abstract")
    ET.SubElement(abstract, "para").text = project.description or (
        f"{project.title}: specimens identified from COI barcodes and photos with CLIBD, reviewed by people."
    )
    rights = ET.SubElement(dataset, "intellectualRights")
    para = ET.SubElement(rights, "para")
    para.text = "This work is licensed under a "
    link = ET.SubElement(para, "ulink", {"url": licence_url(project.licence)})
    ET.SubElement(link, "citetitle").text = licence_url(project.licence)
    contact_element = ET.SubElement(dataset, "contact")
    name = ET.SubElement(contact_element, "individualName")
    ET.SubElement(name, "surName").text = contact["name"]
    ET.SubElement(contact_element, "electronicMailAddress").text = contact["email"]
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def meta_xml(tables: list[tuple[str, str, list[str], bool]]) -> bytes:
    """meta.xml for (file, rowType, term IRIs, is core) tables; column 0 is the id (core) or coreid."""
    root = ET.Element("archive", {"xmlns": "http://rs.tdwg.org/dwc/text/", "metadata": "eml.xml"})
    for file, row_type, terms, is_core in tables:
        element = ET.SubElement(root, "core" if is_core else "extension", {
            "encoding": "UTF-8", "fieldsTerminatedBy": "\\t", "linesTerminatedBy": "\\n", "fieldsEnclosedBy": "",
            "ignoreHeaderLines": "1", "rowType": row_type,
        })  # fmt: skip
        ET.SubElement(ET.SubElement(element, "files"), "location").text = file
        ET.SubElement(element, "id" if is_core else "coreid", {"index": "0"})
        offset = 0 if is_core else 1
        for index, term in enumerate(terms):
            ET.SubElement(element, "field", {"index": str(index + offset), "term": term})
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _text(header: list[str], rows: list[list[str]]) -> bytes:
    return ("\n".join("\t".join(row) for row in [header, *rows]) + "\n").encode("utf-8")


def write_dwca(project_name: str, out: str | Path, verified_only: bool = True, url: str | None = None) -> ExportReport:
    """The project's publishable specimens as a Darwin Core Archive at ``out`` (replaced atomically)."""
    out = Path(out)
    with session_scope(url) as session:
        project = get_project(session, project_name)
        metadata = eml(project)
        selection = publishable(session, project, verified_only)
        if not selection.specimens:
            reasons = "; ".join(f"{n} {why}" for why, n in selection.reasons().items()) or "no specimens"
            raise ProjectError(f"nothing in {project.name} can be published yet ({reasons})")
        core, dna, history, facts, photos = [], [], [], [], []
        for specimen in selection.specimens:
            occurrence = _occurrence_id(project, specimen)
            names = [f"media/{Path(q.media_path).name}" for q in specimen.queries if q.kind == "photo"]
            photos += [media_dir(project.name) / q.media_path for q in specimen.queries if q.kind == "photo"]
            core.append(_core_row(project, specimen, names))
            dna += _dna_rows(occurrence, specimen)
            history += _identification_rows(occurrence, specimen)
            facts += _measurement_rows(occurrence, specimen)
        tables = [
            ("occurrence.txt", OCCURRENCE, [ns + name for name, ns in CORE_TERMS], True),
            ("dna.txt", DNA_DERIVED, [iri for _, iri in DNA_TERMS], False),
            ("identification.txt", IDENTIFICATION, [DWC + t for t in IDENTIFICATION_TERMS], False),
            ("measurementorfact.txt", MEASUREMENT, [DWC + t for t in MEASUREMENT_TERMS], False),
        ]
        contents = {
            "occurrence.txt": _text([name for name, _ in CORE_TERMS], core),
            "dna.txt": _text(["coreid", *(name for name, _ in DNA_TERMS)], dna),
            "identification.txt": _text(["coreid", *IDENTIFICATION_TERMS], history),
            "measurementorfact.txt": _text(["coreid", *MEASUREMENT_TERMS], facts),
            "meta.xml": meta_xml(tables),
            "eml.xml": metadata,
        }
    with atomic_file(out) as partial:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in contents.items():
                archive.writestr(name, data)
            for photo in dict.fromkeys(photos):
                if photo.is_file():
                    archive.write(photo, f"media/{photo.name}")
    return ExportReport(out, len(core), len(dna), len(history), len(facts), selection.left_out)
