"""`db.sql.sql`: a statement's ``text()`` clause is made once and shared, so its cache key is computed
once; distinct statements stay distinct."""

from __future__ import annotations

from sqlalchemy import TextClause

from db.sql import sql


def test_the_same_statement_is_the_same_clause_and_others_are_not() -> None:
    statement = "SELECT id FROM users WHERE phone = :p"
    first = sql(statement)
    assert isinstance(first, TextClause) and str(first) == statement
    assert sql("SELECT id FROM users WHERE phone = :p") is first  # an equal string built elsewhere
    assert sql("SELECT id FROM users WHERE id = :u") is not first
    # Sharing is safe: the generative methods leave the shared clause as it was.
    narrowed = first.bindparams(p="+254712345678")
    assert narrowed is not first and sql(statement) is first and not first._bindparams["p"].value
