"""The first schema: projects, events, specimens, their queries and identifications.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _text(name: str) -> sa.Column:
    return sa.Column(name, sa.Text(), nullable=False)


def _string(name: str, length: int) -> sa.Column:
    return sa.Column(name, sa.String(length=length), nullable=False)


def _created() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "project",
        sa.Column("id", sa.Integer(), primary_key=True),
        _string("name", 200),
        _text("title"),
        _text("description"),
        _created(),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("project.id", ondelete="CASCADE"), nullable=False),
        _string("key", 500),
        _string("site", 500),
        _string("deployment", 500),
        _string("event_date", 60),
        _string("event_time", 60),
        _string("country", 200),
        _string("country_code", 8),
        _string("state_province", 200),
        _text("locality"),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("coordinate_uncertainty_m", sa.Float(), nullable=True),
        _text("collector"),
        _text("method"),
        sa.UniqueConstraint("project_id", "key"),
    )
    op.create_index("ix_event_project_id", "event", ["project_id"])
    op.create_table(
        "specimen",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("project.id", ondelete="CASCADE"), nullable=False),
        sa.Column("event_id", sa.Integer(), sa.ForeignKey("event.id"), nullable=True),
        _string("sample_id", 200),
        _string("field_id", 200),
        _string("museum_id", 200),
        _string("plate", 200),
        _string("well", 8),
        sa.Column("control", sa.Boolean(), nullable=False),
        sa.Column("given_taxonomy", sa.JSON(), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=False),
        _created(),
        _string("status", 20),
        sa.Column("determination_id", sa.Integer(), nullable=True),  # its foreign key: below
        sa.Column("review_priority", sa.Float(), nullable=False),
        sa.Column("review_reasons", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.UniqueConstraint("project_id", "sample_id"),
    )
    op.create_index("ix_specimen_queue", "specimen", ["project_id", "status", "review_priority"])
    op.create_table(
        "identification",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("specimen_id", sa.Integer(), sa.ForeignKey("specimen.id", ondelete="CASCADE"), nullable=False),
        _string("kind", 10),
        _created(),
        _string("taxon", 300),
        _string("rank", 20),
        sa.Column("lineage", sa.JSON(), nullable=False),
        _text("model"),
        _string("model_fingerprint", 100),
        _string("library", 300),
        _string("library_version", 100),
        _string("query_type", 20),
        sa.Column("ranks", sa.JSON(), nullable=False),
        sa.Column("novel", sa.Boolean(), nullable=False),
        sa.Column("novelty", sa.Float(), nullable=True),
        _text("agreement"),
        _string("bin", 100),
        sa.Column("bin_identity", sa.Float(), nullable=True),
        sa.Column("top_identity", sa.Float(), nullable=True),
        sa.Column("neighbours", sa.JSON(), nullable=False),
        sa.Column("warnings", sa.JSON(), nullable=False),
        _string("reviewer", 200),
        _string("action", 20),
        sa.Column("agrees_with_id", sa.Integer(), sa.ForeignKey("identification.id"), nullable=True),
        _text("remarks"),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_identification_specimen_id", "identification", ["specimen_id"])
    op.create_index(
        "ix_identification_machine", "identification", ["specimen_id", "kind", "library", "library_version"]
    )
    # Specimen and identification point at each other: the specimen's key to its determination comes last.
    with op.batch_alter_table("specimen") as batch:
        batch.create_foreign_key("fk_specimen_determination", "identification", ["determination_id"], ["id"])
    op.create_table(
        "query",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("specimen_id", sa.Integer(), sa.ForeignKey("specimen.id", ondelete="CASCADE"), nullable=False),
        _string("kind", 10),
        _text("sequence"),
        _string("marker", 40),
        _text("media_path"),
        _text("source"),
        sa.Column("details", sa.JSON(), nullable=False),
        _created(),
    )
    op.create_index("ix_query_specimen_id", "query", ["specimen_id"])


def downgrade() -> None:
    with op.batch_alter_table("specimen") as batch:
        batch.drop_constraint("fk_specimen_determination", type_="foreignkey")
    for table in ("query", "identification", "specimen", "event", "project"):
        op.drop_table(table)
