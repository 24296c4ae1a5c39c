"""Storage: the SQLAlchemy schema, the async engine, Alembic migrations and the embedded PostgreSQL
bootstrap. Imports none of Sauti's other packages."""
