"""Alembic's entry: migrations run on the connection db.upgrade hands over (never on a URL of their own)."""

from alembic import context

from clibd_core.projects.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
