"""API keys against a real database: made with the secret shown once and only a peppered hash kept,
verified in constant time, refused when malformed, unknown, wrong or revoked, audited; and the
`sauti apikey` command that operators use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from payments.api_keys import (
    ApiKeyHasher,
    UnknownApiKey,
    create_api_key,
    list_api_keys,
    revoke_api_key,
    split_key,
    verify_api_key,
)
from payments.errors import InvalidRequest
from payments.identities import register_user
from tests.integration.ledger_helpers import random_kenyan_number

ROOT = Path(__file__).resolve().parents[2]
HASHER = ApiKeyHasher("test-pepper")


async def _user(engine):
    async with engine.begin() as conn:
        return await register_user(conn, random_kenyan_number(), display_name="Key Owner")


async def test_a_key_is_shown_once_and_only_its_peppered_hash_is_kept(engine):
    async with engine.begin() as conn:
        made = await create_api_key(conn, HASHER, "shop backend")

    prefix, secret = split_key(made.secret)
    assert made.secret == f"sk_{prefix}_{secret}" and prefix == made.key.prefix and len(secret) == 43
    assert made.key.is_platform and made.key.active and made.key.last_used_at is None
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM api_keys WHERE prefix = :p"), {"p": prefix})).one()
        audit = (await conn.execute(text("SELECT actor, action, details::text AS details FROM audit_log "
                                         "WHERE subject = :s"), {"s": f"api_key:{prefix}"})).all()
    assert secret not in str(tuple(row)) and row.secret_hash.startswith("hmac-sha256:")
    assert row.secret_hash == HASHER.hash(prefix, secret)
    # Another pepper gives another hash: a stolen table alone verifies nothing.
    assert ApiKeyHasher("other-pepper").hash(prefix, secret) != row.secret_hash
    assert [(a.actor, a.action) for a in audit] == [("operator", "api_key.created")]
    assert secret not in audit[0].details


async def test_verify_accepts_the_key_and_records_its_use_at_most_once_a_minute(engine):
    async with engine.begin() as conn:
        made = await create_api_key(conn, HASHER, "verifier")
        found = await verify_api_key(conn, HASHER, made.secret)
    assert found is not None and found.id == made.key.id
    async with engine.connect() as conn:
        first_use = (await conn.execute(text("SELECT last_used_at FROM api_keys WHERE id = :i"),
                                        {"i": made.key.id})).scalar_one()
    assert first_use is not None
    async with engine.begin() as conn:
        assert await verify_api_key(conn, HASHER, f"  {made.secret}\n") is not None
        second_use = (await conn.execute(text("SELECT last_used_at FROM api_keys WHERE id = :i"),
                                         {"i": made.key.id})).scalar_one()
    assert second_use == first_use  # a busy key does not rewrite its row on every call


async def test_verify_refuses_malformed_unknown_wrong_and_revoked_keys(engine):
    async with engine.begin() as conn:
        made = await create_api_key(conn, HASHER, "to be refused")
    prefix, secret = split_key(made.secret)
    other_secret = ("A" if secret[0] != "A" else "B") + secret[1:]
    refused = ["", "sk_", "Bearer " + made.secret, made.secret + "x", made.secret.upper(),
               f"sk_{prefix}_{other_secret}", f"sk_zzzzzzzzzzzz_{secret}", "pk_" + made.secret[3:]]
    async with engine.begin() as conn:
        for presented in refused:
            assert await verify_api_key(conn, HASHER, presented) is None, presented
        assert await verify_api_key(conn, ApiKeyHasher("another pepper"), made.secret) is None
        await revoke_api_key(conn, prefix)
        assert await verify_api_key(conn, HASHER, made.secret) is None


async def test_user_keys_list_and_revoke(engine):
    owner = await _user(engine)
    async with engine.begin() as conn:
        made = await create_api_key(conn, HASHER, "owner's app", user_id=owner.id)
    assert made.key.user_id == owner.id and made.key.user_phone == owner.phone and not made.key.is_platform

    async with engine.begin() as conn:
        revoked = await revoke_api_key(conn, made.key.prefix, actor="test")
        again = await revoke_api_key(conn, made.key.prefix, actor="test")
        listed = {k.prefix: k for k in await list_api_keys(conn)}
        active = {k.prefix for k in await list_api_keys(conn, include_revoked=False)}
        audits = (await conn.execute(text("SELECT count(*) FROM audit_log WHERE action = 'api_key.revoked' "
                                          "AND subject = :s"), {"s": f"api_key:{made.key.prefix}"})).scalar_one()
    assert revoked.revoked_at is not None and again.revoked_at == revoked.revoked_at  # revoking twice: no change
    assert audits == 1
    assert listed[made.key.prefix].revoked_at is not None and made.key.prefix not in active
    async with engine.begin() as conn:
        with pytest.raises(UnknownApiKey):
            await revoke_api_key(conn, "nosuchprefix")
        with pytest.raises(UnknownApiKey):
            await revoke_api_key(conn, "'; DROP TABLE api_keys; --")


async def test_a_key_needs_a_name(engine):
    async with engine.begin() as conn:
        for name in ("", "   ", "x" * 201, "tab\there"):
            with pytest.raises(InvalidRequest):
                await create_api_key(conn, HASHER, name)


def sauti(*args: str, url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url, "SAUTI_API_KEY_PEPPER": "cli-pepper"}
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


async def test_the_apikey_command_creates_lists_and_revokes(database_url, engine):
    owner = await _user(engine)

    made = sauti("apikey", "create", "--name", "merchant one", "--user", owner.phone, url=database_url)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    prefix, _ = split_key(key)
    assert f"API key {prefix} (merchant one; acts for {owner.phone})" in made.stdout
    assert "shown only this once" in made.stderr
    async with engine.begin() as conn:  # the key printed is the key stored, with the CLI's pepper
        assert (await verify_api_key(conn, ApiKeyHasher("cli-pepper"), key)).user_id == owner.id

    listed = sauti("apikey", "list", url=database_url)
    assert listed.returncode == 0 and prefix in listed.stdout and owner.phone in listed.stdout
    assert key.split("_", 2)[2] not in listed.stdout  # never the secret

    revoked = sauti("apikey", "revoke", prefix, url=database_url)
    assert revoked.returncode == 0 and f"API key {prefix} (merchant one) revoked" in revoked.stdout
    assert "revoked" in sauti("apikey", "list", url=database_url).stdout
    assert prefix not in sauti("apikey", "list", "--active", url=database_url).stdout

    unknown_user = sauti("apikey", "create", "--name", "x", "--user", "+254700000001", url=database_url)
    assert unknown_user.returncode != 0 and "has no Sauti wallet" in unknown_user.stderr
    unknown_key = sauti("apikey", "revoke", "nosuchprefix", url=database_url)
    assert unknown_key.returncode != 0 and "no API key" in unknown_key.stderr
    assert "Traceback" not in unknown_user.stderr + unknown_key.stderr
