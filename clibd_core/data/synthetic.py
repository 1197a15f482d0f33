"""A synthetic BIOSCAN-like world: one evolutionary history behind both the barcodes and the photos.

A taxonomy tree (orders → families → genera → species, with the skewed sizes of real collections) is
walked from the root; at every branch the COI-like barcode takes substitutions (mostly at third codon
positions, never creating a stop codon of NCBI table 5) and the body plan of the insect drawn in the
photos drifts. Branch lengths are calibrated so that pairwise distances per rank match the real BOLD
barcodes in ../shared/data/bold (docs/DATA.md shows both). The photo's traits drift most between
orders and least between species, and every specimen adds its own pose, scale, blur, light and
debris, so an image predicts its order well, its genus partly and its species weakly.

Names are clearly synthetic (orders ``Syn…ptera``, families ``Syn…idae``, genera ``…syn``). The world
writes itself as a BIOSCAN-5M layout (metadata CSV + ``images/cropped_256/{split}/{chunk}/``), so the
demo exercises the real reader. Everything is deterministic for a seed.
"""

from __future__ import annotations

import csv
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from clibd_core.data.bioscan import BIOSCAN_5M_METADATA, IMAGE_DIR
from clibd_core.data.records import Record
from clibd_core.data.splits import assign_splits
from clibd_core.fileio import atomic_directory, write_json
from clibd_core.taxonomy import MISSING, Taxonomy

BARCODE_LENGTH = 658
BASES = np.array(list("ACGT"))
# Insect COI's base composition (measured on the BOLD dev set: A 30 %, C 16 %, G 15 %, T 39 %).
BASE_FREQUENCIES = np.array([0.30, 0.16, 0.15, 0.39])
# Share of substitutions by codon position (1st, 2nd, 3rd): third positions take most, as in real COI.
CODON_POSITION_WEIGHTS = np.array([0.14, 0.04, 0.82])
# Substitutions per site on the branch *into* each rank (calibrated: bench/synthetic_calibration.py).
BRANCH_LENGTHS = {"order": 0.16, "family": 0.03, "genus": 0.045, "species": 0.059, "specimen": 0.0012}
# Lineages evolve at different speeds: each branch's length is scaled by a log-normal factor (mean 1).
RATE_SPREAD = 0.6
# Standard deviation of the photo-trait drift on the branch into each rank.
TRAIT_DRIFT = {"order": 1.0, "family": 0.45, "genus": 0.3, "species": 0.15, "specimen": 0.1}
N_TRAITS = 18
COUNTRIES = (
    ("Canada", 45.4, -75.7),
    ("Costa Rica", 10.0, -84.0),
    ("South Africa", -25.7, 28.2),
    ("Thailand", 13.7, 100.5),
)
SYLLABLES = "ka lo mi ve ru to pha xi de no qua li be sa ty mo ze ri gu pe".split()
CSV_COLUMNS = (
    "processid sampleid taxon phylum class order family subfamily genus species dna_bin dna_barcode "
    "country province_state coord-lat coord-lon split chunk"
).split()


@dataclass
class WorldConfig:
    """Size and seed of a synthetic world; the sizes are means of skewed (geometric) draws."""

    n_records: int = 1000
    n_orders: int = 4
    families_per_order: float = 5.0
    genera_per_family: float = 3.0
    species_per_genus: float = 3.0
    unidentified_fraction: float = 0.05  # records identified only to genus (→ pretrain split)
    image_size: tuple[int, int] = (341, 256)  # BIOSCAN's cropped_256 frames
    seed: int = 0


@dataclass
class Species:
    """A leaf of the tree: its lineage, its barcode, its photo traits and where it lives."""

    taxonomy: Taxonomy
    barcode: np.ndarray  # codes 0..3
    traits: np.ndarray
    country: int
    bin: str


@dataclass
class Specimen:
    """Everything needed to write one record; rendering happens in worker processes."""

    processid: str
    species: Species
    barcode: str
    traits: np.ndarray
    seed: int
    identified_to_species: bool = True
    split: str = ""
    extra: dict = field(default_factory=dict)


# -- names -------------------------------------------------------------------------------------
def _stem(rng: np.random.Generator, syllables: int) -> str:
    return "".join(rng.choice(SYLLABLES, size=syllables))


def _unique(rng: np.random.Generator, make, used: set[str]) -> str:
    while True:
        name = make(rng)
        if name not in used:
            used.add(name)
            return name


# -- barcodes ----------------------------------------------------------------------------------
def _is_stop(codon: np.ndarray) -> bool:
    return codon[0] == 3 and codon[1] == 0 and codon[2] in (0, 2)  # TAA or TAG


def random_coding_sequence(rng: np.random.Generator, length: int = BARCODE_LENGTH) -> np.ndarray:
    """An AT-rich sequence whose frame-0 codons contain no table-5 stop (TAA, TAG)."""
    sequence = rng.choice(4, size=length, p=BASE_FREQUENCIES)
    for start in range(0, length - 2, 3):
        while _is_stop(sequence[start : start + 3]):
            sequence[start : start + 3] = rng.choice(4, size=3, p=BASE_FREQUENCIES)
    return sequence


def mutate(sequence: np.ndarray, per_site: float, rng: np.random.Generator) -> np.ndarray:
    """Apply Poisson(per_site × length) substitutions, mostly at third codon positions, rejecting stops."""
    child = sequence.copy()
    count = rng.poisson(per_site * len(child))
    codon_starts = np.arange(0, len(child) - 2, 3)
    for _ in range(count):
        position = rng.choice(codon_starts) + rng.choice(3, p=CODON_POSITION_WEIGHTS)
        start = position - position % 3
        old = child[position]
        for _attempt in range(8):
            child[position] = rng.choice(4, p=BASE_FREQUENCIES)
            if child[position] != old and not _is_stop(child[start : start + 3]):
                break
        else:
            child[position] = old
    return child


def decode(sequence: np.ndarray) -> str:
    return "".join(BASES[sequence])


# -- the tree ----------------------------------------------------------------------------------
def _geometric(rng: np.random.Generator, mean: float) -> int:
    return int(rng.geometric(1.0 / max(mean, 1.0)))


def build_tree(config: WorldConfig) -> list[Species]:
    """All species of the world, each carrying the barcode and traits evolved along its lineage."""
    rng = np.random.default_rng(config.seed)
    used: set[str] = set()
    root_barcode = random_coding_sequence(rng)
    root_traits = np.zeros(N_TRAITS)
    species: list[Species] = []
    for _ in range(config.n_orders):
        order = _unique(rng, lambda r: "Syn" + _stem(r, 2) + "ptera", used)
        order_dna, order_traits = _branch(root_barcode, root_traits, "order", rng)
        for _ in range(_geometric(rng, config.families_per_order)):
            family = _unique(rng, lambda r: "Syn" + _stem(r, 2) + "idae", used)
            family_dna, family_traits = _branch(order_dna, order_traits, "family", rng)
            for _ in range(_geometric(rng, config.genera_per_family)):
                genus = _unique(rng, lambda r: (_stem(r, 2) + "syn").capitalize(), used)
                genus_dna, genus_traits = _branch(family_dna, family_traits, "genus", rng)
                country = int(rng.integers(len(COUNTRIES)))
                for _ in range(_geometric(rng, config.species_per_genus)):
                    epithet = _unique(rng, lambda r, g=genus: f"{g} {_stem(r, 2)}us", used)
                    dna, traits = _branch(genus_dna, genus_traits, "species", rng)
                    taxonomy = Taxonomy.from_values(order=order, family=family, genus=genus, species=epithet)
                    bin_uri = f"SYN:{len(species):05d}"
                    species.append(Species(taxonomy, dna, traits, country, bin_uri))
    return species


def _rate(rank: str, rng: np.random.Generator) -> float:
    return BRANCH_LENGTHS[rank] * rng.lognormal(-(RATE_SPREAD**2) / 2, RATE_SPREAD)


def _branch(dna: np.ndarray, traits: np.ndarray, rank: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return mutate(dna, _rate(rank, rng), rng), traits + rng.normal(0.0, TRAIT_DRIFT[rank], size=N_TRAITS)


def sample_specimens(config: WorldConfig, species: list[Species]) -> list[Specimen]:
    """Draw ``n_records`` specimens with skewed (log-normal) abundance per species."""
    rng = np.random.default_rng(config.seed + 1)
    abundance = rng.lognormal(0.0, 1.2, size=len(species))
    counts = rng.multinomial(config.n_records, abundance / abundance.sum())
    specimens = []
    for index, (kind, count) in enumerate(zip(species, counts, strict=True)):
        diversity = _rate("specimen", rng) * rng.lognormal(-0.5, 1.0)  # some species hide cryptic lineages
        for _ in range(count):
            dna = decode(mutate(kind.barcode, diversity, rng))
            dna = _sequencing_artefacts(dna, rng)
            traits = kind.traits + rng.normal(0.0, TRAIT_DRIFT["specimen"], size=N_TRAITS)
            processid = f"SYNTH{len(specimens):06d}-{index % 100:02d}"
            identified = rng.random() >= config.unidentified_fraction
            specimens.append(Specimen(processid, kind, dna, traits, int(rng.integers(2**31)), identified))
    order = rng.permutation(len(specimens))
    return [specimens[i] for i in order]


def _sequencing_artefacts(dna: str, rng: np.random.Generator) -> str:
    """Real barcodes are sometimes partial and carry a few N calls."""
    if rng.random() < 0.1:
        start, stop = int(rng.integers(0, 60)), int(rng.integers(BARCODE_LENGTH - 200, BARCODE_LENGTH))
        dna = dna[start:stop]
    if rng.random() < 0.05:
        chars = list(dna)
        for position in rng.choice(len(chars), size=int(rng.integers(1, 5)), replace=False):
            chars[position] = "N"
        dna = "".join(chars)
    return dna


# -- photos ------------------------------------------------------------------------------------
def _unit(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def _colour(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return int(255 * r), int(255 * g), int(255 * b)


def plate_background(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A BIOSCAN plate well: pale grey disc with faint concentric rings, a bright lilac rim outside."""
    width, height = size
    cx, cy = width / 2 + rng.normal(0, 6), height / 2 + rng.normal(0, 6)
    y, x = np.mgrid[0:height, 0:width]
    radius = np.hypot(x - cx, y - cy) / (0.5 * height)
    base = 0.78 + rng.normal(0, 0.03) + 0.035 * np.sin(radius * rng.uniform(14, 22) + rng.uniform(0, 6))
    rim = np.clip((radius - 0.92) * 6, 0, 1)
    angle = np.arctan2(y - cy, x - cx)
    grey = base * (1 - rim) + (0.9 + 0.05 * np.sin(angle * rng.integers(5, 12))) * rim
    tint = np.stack([grey * 0.97, grey * 0.97, grey * 1.02 + 0.02 * rim], axis=-1)
    noise = rng.normal(0, 0.012, size=tint.shape)
    return Image.fromarray(np.clip(255 * (tint + noise), 0, 255).astype(np.uint8))


def draw_insect(traits: np.ndarray, scale: float) -> Image.Image:
    """An insect drawn from its trait vector, head to the right, on a transparent canvas."""
    t = [_unit(v) for v in traits]
    length = scale * (40 + 60 * t[0])
    width = length * (0.16 + 0.22 * t[1])
    canvas = Image.new("RGBA", (int(length * 2.6), int(length * 2.6)), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    cx, cy = canvas.width / 2, canvas.height / 2
    # browns, blacks, ochres and the occasional red or metallic green, as in real bulk samples
    body = _colour(0.01 + 0.13 * t[2] + (0.3 if t[3] > 0.85 else 0.0), 0.3 + 0.6 * t[4], 0.1 + 0.55 * t[5])
    accent = _colour(0.17 * t[6], 0.3 + 0.6 * t[7], 0.2 + 0.7 * t[8])
    abdomen = length * (0.4 + 0.25 * t[9])
    thorax = length * (0.18 + 0.1 * t[10])
    head = width * (0.6 + 0.6 * t[11])
    leg = length * (0.25 + 0.5 * t[12])
    antenna = length * (0.1 + 0.9 * t[13])
    tail_x = cx - abdomen - thorax / 2
    # legs and antennae first, so the body covers their roots
    for side in (-1, 1):
        for k, angle in enumerate((-0.9, 0.0, 0.9)):
            root_x = cx - thorax / 2 + k * thorax / 2
            knee = (root_x + leg * 0.4 * math.sin(angle), cy + side * leg * 0.55)
            foot = (knee[0] + leg * 0.5 * math.sin(angle - 0.3), knee[1] + side * leg * 0.35)
            draw.line([(root_x, cy), knee, foot], fill=body + (255,), width=max(1, int(width * 0.08)))
        tip = (cx + thorax / 2 + head + antenna * 0.8, cy + side * antenna * (0.2 + 0.6 * t[14]))
        draw.line([(cx + thorax / 2 + head * 0.8, cy), tip], fill=body + (255,), width=max(1, int(width * 0.05)))
    if t[15] > 0.35:  # wings: an order-level trait in practice (drift between orders is largest)
        wing_length = length * (0.5 + 0.6 * t[16])
        wing_alpha = int(60 + 160 * t[17])
        wing_colour = _colour(0.1 * t[6], 0.25 * t[7], 0.55 + 0.4 * t[8]) + (wing_alpha,)
        for side in (-1, 1):
            spread = 0.25 + 0.35 * t[1]
            wing = [
                (cx, cy),
                (cx - wing_length * 0.5, cy + side * wing_length * spread),
                (cx - wing_length, cy + side * wing_length * spread * 0.5),
                (cx - wing_length * 0.9, cy + side * width * 0.2),
            ]
            draw.polygon(wing, fill=wing_colour)
    draw.ellipse([tail_x, cy - width / 2, cx - thorax / 2 + 2, cy + width / 2], fill=body + (255,))
    bands = int(t[7] * 5)
    for band in range(bands):  # abdominal stripes
        x = tail_x + abdomen * (band + 0.7) / (bands + 1)
        draw.line(
            [(x, cy - width * 0.42), (x, cy + width * 0.42)], fill=accent + (255,), width=max(1, int(abdomen / 14))
        )
    draw.ellipse([cx - thorax / 2, cy - width * 0.45, cx + thorax / 2, cy + width * 0.45], fill=body + (255,))
    draw.ellipse([cx + thorax / 2 - 1, cy - head / 2, cx + thorax / 2 + head, cy + head / 2], fill=accent + (255,))
    return canvas


def render_photo(traits: np.ndarray, seed: int, size: tuple[int, int]) -> Image.Image:
    """One specimen photo: the insect in a random pose, size, place, light and focus, with debris."""
    rng = np.random.default_rng(seed)
    background = plate_background(size, rng)
    insect = draw_insect(traits, scale=float(rng.uniform(0.55, 1.1))).rotate(float(rng.uniform(0, 360)), expand=True)
    x = int(size[0] / 2 - insect.width / 2 + rng.normal(0, size[1] * 0.06))
    y = int(size[1] / 2 - insect.height / 2 + rng.normal(0, size[1] * 0.06))
    background.paste(insect, (x, y), insect)
    draw = ImageDraw.Draw(background)
    for _ in range(int(rng.integers(0, 5))):  # debris: specks and hairs
        px, py = rng.uniform(0, size[0]), rng.uniform(0, size[1])
        grey = int(rng.integers(40, 160))
        if rng.random() < 0.5:
            draw.ellipse([px, py, px + rng.uniform(1, 3), py + rng.uniform(1, 3)], fill=(grey, grey, grey))
        else:
            draw.line([(px, py), (px + rng.normal(0, 12), py + rng.normal(0, 12))], fill=(grey, grey, grey), width=1)
    light = float(rng.uniform(0.85, 1.12))
    photo = background.point(lambda v: min(255, int(v * light)))
    return photo.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 1.1))))


# -- writing the world -------------------------------------------------------------------------
def _csv_row(specimen: Specimen, chunk: str) -> dict[str, object]:
    taxonomy = specimen.species.taxonomy
    lat, lon = COUNTRIES[specimen.species.country][1:]
    species = taxonomy.species if specimen.identified_to_species else ""
    return {
        "processid": specimen.processid,
        "sampleid": f"SAMPLE-{specimen.processid}",
        "taxon": species or taxonomy.genus,
        "phylum": "Arthropoda",
        "class": "Insecta",
        "order": taxonomy.order,
        "family": taxonomy.family,
        "subfamily": "",
        "genus": taxonomy.genus,
        "species": species,
        "dna_bin": specimen.species.bin,
        "dna_barcode": specimen.barcode,
        "country": COUNTRIES[specimen.species.country][0],
        "province_state": "",
        "coord-lat": round(lat + (specimen.seed % 1000) / 2000, 4),
        "coord-lon": round(lon + (specimen.seed % 777) / 1500, 4),
        "split": specimen.split,
        "chunk": chunk,
    }


def _render_and_save(job: tuple[np.ndarray, int, tuple[int, int], str]) -> None:
    traits, seed, size, path = job
    render_photo(traits, seed, size).save(path, quality=90)


def generate_world(out_dir: str | Path, config: WorldConfig | None = None, workers: int | None = None) -> Path:
    """Write a synthetic world as a BIOSCAN-5M layout under ``out_dir``; returns the metadata CSV's path.

    Splits follow the CLIBD partitioning (:mod:`clibd_core.data.splits`) and are written to the CSV's
    ``split`` column, as BIOSCAN-5M ships them. The write is atomic.
    """
    config = config or WorldConfig()
    species = build_tree(config)
    specimens = sample_specimens(config, species)
    records = [
        Record(
            id=s.processid, taxonomy=s.species.taxonomy if s.identified_to_species else _genus_only(s.species.taxonomy)
        )
        for s in specimens
    ]
    assign_splits(records, seed=config.seed)
    for specimen, record in zip(specimens, records, strict=True):
        specimen.split = record.split or "pretrain"
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as staging:
        jobs, rows = [], []
        for index, specimen in enumerate(specimens):
            chunk = str(index // 1000)
            folder = staging / IMAGE_DIR / specimen.split / chunk
            folder.mkdir(parents=True, exist_ok=True)
            jobs.append((specimen.traits, specimen.seed, config.image_size, str(folder / f"{specimen.processid}.jpg")))
            rows.append(_csv_row(specimen, chunk))
        with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
            list(pool.map(_render_and_save, jobs, chunksize=64))
        with open(staging / BIOSCAN_5M_METADATA, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        write_json(staging / "world.json", {"config": asdict(config), "species": len(species), "records": len(rows)})
    return out_dir / BIOSCAN_5M_METADATA


def _genus_only(taxonomy: Taxonomy) -> Taxonomy:
    return Taxonomy(order=taxonomy.order, family=taxonomy.family, genus=taxonomy.genus, species=MISSING)
