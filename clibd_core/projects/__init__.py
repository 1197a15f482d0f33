"""Field projects: a season's specimens, their barcodes and photos, every identification (machine or
human, never overwritten) and the determination derived from them, kept in a real database.

db.py opens it (SQLite in the workspace, or ``CLIBD_DATABASE``), schema.py describes it, migrations/
carries a project made by one version into the next; intake.py, identify.py and review.py are the work
the CLI (clibd_core/cli/project.py) and the app's Projects and Review tabs do on it.
"""
