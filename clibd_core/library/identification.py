"""The answer's data types: a query, its neighbours, the call at each rank, the nearest BIN, and the
identification that gathers them (what the CLI writes, the app shows and the API returns)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from clibd_core.taxonomy import RANKS


@dataclass
class Query:
    """One specimen: a barcode (raw or cleaned), an image (path, bytes, PIL image or array), or both."""

    id: str
    barcode: str | None = None
    image: object = None


@dataclass
class Neighbour:
    row: int
    id: str
    lineage: dict[str, str]
    similarity: float
    identity: float | None = None


@dataclass
class RankCall:
    name: str
    confidence: float
    vote_share: float


@dataclass
class BinCall:
    """The nearest BOLD BIN and whether the query falls inside it."""

    name: str
    identity: float
    inside: bool


@dataclass
class Identification:
    """The answer for one query; ``error`` set means the query could not be used (and why)."""

    query_id: str
    query_type: str = ""  # "barcode", "image" or "image+barcode"
    ranks: dict[str, RankCall] = field(default_factory=dict)
    deepest_rank: str | None = None
    novel: bool = False
    novelty: float = 0.0  # calibrated probability that the species is not in the library
    neighbours: list[Neighbour] = field(default_factory=list)
    agreement: str = ""  # image+barcode: where the two agree and disagree
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    parts: dict[str, Identification] = field(default_factory=dict)  # image+barcode: each on its own
    embedding: list[float] | None = None  # the query's vector (barcode's for image+barcode)
    key_modality: str = ""  # which library vectors it was matched against
    bin: BinCall | None = None  # barcodes against a library with BINs

    @property
    def headline(self) -> str:
        if self.error:
            return f"error: {self.error}"
        if not self.deepest_rank:
            return "no confident placement"
        call = self.ranks[self.deepest_rank]
        absent = "; species not in this library" if self.novel and self.deepest_rank != "species" else ""
        return f"{self.deepest_rank} {call.name} ({call.confidence:.2f}){absent}"

    def to_dict(self) -> dict:
        """JSON-ready (without the embedding vectors)."""
        data = asdict(self)
        data.pop("embedding")
        for part in data["parts"].values():
            part.pop("embedding")
        return {**data, "headline": self.headline}

    def row(self) -> dict:
        """The flat CSV row (see `clibd identify`)."""
        top = self.neighbours[0] if self.neighbours else None
        return {
            "query_id": self.query_id,
            "query_type": self.query_type,
            **{rank: self.ranks[rank].name if rank in self.ranks else "" for rank in RANKS},
            **{f"{rank}_conf": round(self.ranks[rank].confidence, 4) if rank in self.ranks else None for rank in RANKS},
            "deepest_rank": self.deepest_rank or "",
            "headline": self.headline,
            "top1_id": top.id if top else "",
            "top1_similarity": round(top.similarity, 4) if top else None,
            "top1_identity": round(top.identity, 2) if top and top.identity is not None else None,
            "novel": self.novel,
            "novelty": round(self.novelty, 4),
            "bin": self.bin.name if self.bin else "",
            "bin_identity": round(self.bin.identity, 2) if self.bin else None,
            "in_bin": self.bin.inside if self.bin else None,
            "agreement": self.agreement,
            "warnings": "; ".join(self.warnings),
            "error": self.error or "",
        }
