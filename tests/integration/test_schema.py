"""The migrated database and `db/schema.py` describe the same tables and columns."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from db.schema import metadata


async def test_schema_module_matches_the_migrations(engine):
    def diff(sync_conn):
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return compare_metadata(context, metadata)

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
    # Only differences SQLAlchemy cannot express (e.g. the partial index) may remain.
    relevant = [d for d in differences if not (d[0] == "remove_index" and d[1].name == "ix_holds_pending_expiry")]
    assert relevant == [], relevant
