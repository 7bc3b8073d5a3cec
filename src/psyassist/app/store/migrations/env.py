"""Alembic environment for the app's database; run through psyassist.app.store.db.migrate().

    psyassist app migrate --database-url sqlite:///app.db

The connection comes from `config.attributes["connection"]` (db.migrate passes its engine's), so
the same code upgrades SQLite and PostgreSQL.  SQLite cannot ALTER most things: batch mode
(copy-and-move) makes later revisions portable.
"""

from alembic import context

from psyassist.app.store.models import Base

config = context.config
connection = config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
