"""What every migration under `db/migrations/versions` runs its SQL with.

The schema is written as plain SQL scripts (tables, functions, triggers). Alembic's `op.execute`
sends a prepared statement, which holds one command only, so a script goes through asyncpg's
simple-query protocol instead, on the migration's own connection and inside its transaction.
"""

from collections.abc import Iterable

from alembic import op
from sqlalchemy.util import await_only


def run_script(sql: str) -> None:
    """Run a multi-statement SQL script inside the running migration's transaction."""
    driver_connection = op.get_bind().connection.driver_connection
    await_only(driver_connection.execute(sql))


def create_indexes(indexes: Iterable[str]) -> str:
    """The script that builds each of ``indexes`` (``"name ON table (…) [WHERE …]"``) unless it
    exists: a large live database may have built it first, ``CONCURRENTLY`` (see the README)."""
    return "".join(f"CREATE INDEX IF NOT EXISTS {index};\n" for index in indexes)


def drop_indexes(indexes: Iterable[str]) -> str:
    """The script that drops each of ``indexes`` (as `create_indexes` takes them), if it exists."""
    return "".join(f"DROP INDEX IF EXISTS {index.split()[0]};\n" for index in indexes)
