"""Alembic's entry point: migrations run on the connection :mod:`connector.store.migrate` passes in."""

from alembic import context

from connector.store.migrate import VERSION_TABLE
from connector.store.schema import metadata
from connector.trigger import tables  # noqa: F401  (the trigger's tables are on the same metadata)

context.configure(connection=context.config.attributes["connection"], target_metadata=metadata,
                  version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
