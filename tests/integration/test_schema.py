"""The migrated database and `db/schema.py` describe the same tables and columns."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from db.engine import create_engine
from db.migrate import downgrade, head_revision, upgrade
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


async def test_every_migration_downgrades_and_upgrades_again(new_database):
    url = await new_database()
    engine = create_engine(url, pool_size=1)
    try:
        head = head_revision()
        assert await downgrade(engine, "base") == "base"
        async with engine.connect() as conn:
            left = (await conn.execute(text("SELECT count(*) FROM pg_tables "
                                            "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"))).scalar()
        assert left == 0
        assert await upgrade(engine) == head
    finally:
        await engine.dispose()
