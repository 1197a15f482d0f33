"""The project database's tables (SQLAlchemy 2.0 typed models); migrations/ builds exactly these.

A specimen is the unit. Its field data sits on the specimen and on its collecting event; its queries are
the barcodes and photos taken of it; its identifications are appended, never edited (a human may
withdraw their own, which marks it withdrawn). The determination (``determination_id``, ``status``) and
the review queue's order (``review_priority``, ``review_reasons``) are derived from the identifications
by review.refresh_determination in the same transaction that adds one; ``version`` moves with every
such change, so a reviewer acting on what they saw before someone else's change is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Project(Base):
    __tablename__ = "project"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    licence: Mapped[str] = mapped_column(String(200), default="")
    contact: Mapped[dict] = mapped_column(JSON, default=dict)  # name, email, organisation (eml.xml)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)

    specimens: Mapped[list[Specimen]] = relationship(back_populates="project")
    watch_taxa: Mapped[list[WatchTaxon]] = relationship(cascade="all, delete-orphan")


class WatchTaxon(Base):
    """A taxon whose every machine identification a person must see (a pest, a protected species)."""

    __tablename__ = "watch_taxon"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))


class Event(Base):
    """One collecting event: a place and a time (a trap night, a sweep), shared by its specimens."""

    __tablename__ = "event"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(500))  # what makes it one event (intake.event_key)
    site: Mapped[str] = mapped_column(String(500), default="")
    deployment: Mapped[str] = mapped_column(String(500), default="")
    event_date: Mapped[str] = mapped_column(String(60), default="")  # ISO 8601, a date, an interval
    event_time: Mapped[str] = mapped_column(String(60), default="")
    country: Mapped[str] = mapped_column(String(200), default="")
    country_code: Mapped[str] = mapped_column(String(8), default="")
    state_province: Mapped[str] = mapped_column(String(200), default="")
    locality: Mapped[str] = mapped_column(Text, default="")
    latitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    longitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    coordinate_uncertainty_m: Mapped[float | None] = mapped_column(Float, nullable=True)
    collector: Mapped[str] = mapped_column(Text, default="")
    method: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (UniqueConstraint("project_id", "key"),)


class Specimen(Base):
    __tablename__ = "specimen"
    __table_args__ = (
        UniqueConstraint("project_id", "sample_id"),
        Index("ix_specimen_queue", "project_id", "status", "review_priority"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    event_id: Mapped[int | None] = mapped_column(ForeignKey("event.id"), nullable=True)
    sample_id: Mapped[str] = mapped_column(String(200))
    field_id: Mapped[str] = mapped_column(String(200), default="")
    museum_id: Mapped[str] = mapped_column(String(200), default="")
    plate: Mapped[str] = mapped_column(String(200), default="")
    well: Mapped[str] = mapped_column(String(8), default="")
    control: Mapped[bool] = mapped_column(Boolean, default=False)  # a control well: never identified
    given_taxonomy: Mapped[dict] = mapped_column(JSON, default=dict)  # what the sheet said, as it came
    extra: Mapped[dict] = mapped_column(JSON, default=dict)  # other columns of the sheet, as they came
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    # Derived from the identifications (review.refresh_determination), never set by hand:
    status: Mapped[str] = mapped_column(String(20), default="new")  # new, machine, verified, not_identifiable
    determination_id: Mapped[int | None] = mapped_column(
        ForeignKey("identification.id", use_alter=True, name="fk_specimen_determination"), nullable=True
    )
    review_priority: Mapped[float] = mapped_column(Float, default=0.0)
    review_reasons: Mapped[list] = mapped_column(JSON, default=list)
    version: Mapped[int] = mapped_column(Integer, default=1)

    project: Mapped[Project] = relationship(back_populates="specimens")
    event: Mapped[Event | None] = relationship()
    queries: Mapped[list[QueryItem]] = relationship(back_populates="specimen", order_by="QueryItem.id")
    identifications: Mapped[list[IdentificationRecord]] = relationship(
        back_populates="specimen", foreign_keys="IdentificationRecord.specimen_id", order_by="IdentificationRecord.id"
    )
    determination: Mapped[IdentificationRecord | None] = relationship(foreign_keys=[determination_id], post_update=True)

    __mapper_args__ = {"version_id_col": version}


class QueryItem(Base):
    """A barcode or a photo of a specimen (photos are kept in the project's media folder)."""

    __tablename__ = "query"

    id: Mapped[int] = mapped_column(primary_key=True)
    specimen_id: Mapped[int] = mapped_column(ForeignKey("specimen.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(10))  # barcode, photo
    sequence: Mapped[str] = mapped_column(Text, default="")  # the barcode as it came (cleaned when identified)
    marker: Mapped[str] = mapped_column(String(40), default="")
    media_path: Mapped[str] = mapped_column(Text, default="")  # the photo, relative to the media folder
    source: Mapped[str] = mapped_column(Text, default="")  # the file it came from (and the FASTA header)
    details: Mapped[dict] = mapped_column(JSON, default=dict)  # e.g. a photo's time, primers
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)

    specimen: Mapped[Specimen] = relationship(back_populates="queries")


class IdentificationRecord(Base):
    """One identification, machine or human, as it was made; only ``withdrawn_*`` ever changes."""

    __tablename__ = "identification"
    __table_args__ = (Index("ix_identification_machine", "specimen_id", "kind", "library", "library_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    specimen_id: Mapped[int] = mapped_column(ForeignKey("specimen.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(10))  # machine, human
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    # The name and rank it states (machine: its deepest confident rank; empty when it states none).
    taxon: Mapped[str] = mapped_column(String(300), default="")
    rank: Mapped[str] = mapped_column(String(20), default="")
    lineage: Mapped[dict] = mapped_column(JSON, default=dict)  # rank → name down to ``rank``
    # Machine: what answered and what it found.
    model: Mapped[str] = mapped_column(Text, default="")
    model_fingerprint: Mapped[str] = mapped_column(String(100), default="")
    library: Mapped[str] = mapped_column(String(300), default="")
    library_version: Mapped[str] = mapped_column(String(100), default="")
    query_type: Mapped[str] = mapped_column(String(20), default="")
    ranks: Mapped[dict] = mapped_column(JSON, default=dict)  # rank → {name, confidence}
    novel: Mapped[bool] = mapped_column(Boolean, default=False)
    novelty: Mapped[float | None] = mapped_column(Float, nullable=True)
    agreement: Mapped[str] = mapped_column(Text, default="")
    bin: Mapped[str] = mapped_column(String(100), default="")
    bin_identity: Mapped[float | None] = mapped_column(Float, nullable=True)
    top_identity: Mapped[float | None] = mapped_column(Float, nullable=True)
    neighbours: Mapped[list] = mapped_column(JSON, default=list)  # the nearest references, for review
    warnings: Mapped[list] = mapped_column(JSON, default=list)
    # Human: who, what they did, why.
    reviewer: Mapped[str] = mapped_column(String(200), default="")
    action: Mapped[str] = mapped_column(String(20), default="")  # agree, correct, not_identifiable
    agrees_with_id: Mapped[int | None] = mapped_column(ForeignKey("identification.id"), nullable=True)
    remarks: Mapped[str] = mapped_column(Text, default="")
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    specimen: Mapped[Specimen] = relationship(back_populates="identifications", foreign_keys=[specimen_id])
