"""A project's watch list (taxa a person must see) and the fields publishing needs (licence, contact).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("project") as batch:
        batch.add_column(sa.Column("licence", sa.String(length=200), nullable=False, server_default=""))
        batch.add_column(sa.Column("contact", sa.JSON(), nullable=False, server_default="{}"))
    op.create_table(
        "watch_taxon",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("project.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.UniqueConstraint("project_id", "name"),
    )


def downgrade() -> None:
    op.drop_table("watch_taxon")
    with op.batch_alter_table("project") as batch:
        batch.drop_column("contact")
        batch.drop_column("licence")
