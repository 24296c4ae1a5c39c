"""Database URLs as logs and error messages show them (`db.engine.redacted`): no password, wherever
the URL carries it, and never an error of its own; and a URL that cannot be used said without it."""

import pytest

from db.engine import BadDatabaseUrl, async_url, redacted


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://sauti:TopSecret123@db:5432/sauti", "postgresql://sauti:***@db:5432/sauti"),
    ("postgresql://sauti@db/sauti?password=TopSecret123", "postgresql://sauti@db/sauti?password=***"),
    ("postgresql://sauti@db/sauti?sslmode=require&sslpassword=TopSecret123&PASSWORD=TopSecret123",
     "postgresql://sauti@db/sauti?PASSWORD=***&sslmode=require&sslpassword=***"),
    ("postgresql://sauti@db/sauti", "postgresql://sauti@db/sauti"),
])
def test_passwords_are_hidden_in_the_user_part_and_the_query(url, shown):
    assert redacted(url) == shown


@pytest.mark.parametrize(("url", "shown"), [
    # Several hosts (libpq's failover form): SQLAlchemy cannot read the port, and raised in the error path.
    ("postgresql://sauti:TopSecret123@h1:5432,h2:5432/sauti", "postgresql://sauti:***@h1:5432,h2:5432/sauti"),
    ("postgresql://sauti:Top/Secret@123@h1:5432,h2:5432/sauti?password=TopSecret123&target_session_attrs=any",
     "postgresql://sauti:***@h1:5432,h2:5432/sauti?password=***&target_session_attrs=any"),
    ("postgresql//sauti:TopSecret123@db/sauti", "*** (no scheme://: no telling which part is secret)"),
])
def test_a_url_that_cannot_be_read_is_still_shown_without_its_password(url, shown):
    assert redacted(url) == shown


def test_a_url_that_cannot_be_used_is_refused_without_its_password():
    for url in ("postgresql://sauti:TopSecret123@h1:5432,h2:5432/sauti", "postgresql//sauti:TopSecret123@db/x",
                "mysql://sauti:TopSecret123@db/sauti"):
        with pytest.raises(BadDatabaseUrl) as refused:
            async_url(url)
        assert "TopSecret123" not in str(refused.value)
