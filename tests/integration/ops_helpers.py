"""Operators' test helpers: an HTTP client on the operator API and dashboard over a payments test
world (`tests.integration.payments_helpers`), staff keys, JSON calls, signing in to the dashboard as
a browser does, and the plans of the statements behind a read (no sequential scans)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.ops_api import add_ops_api_routes
from gateway.ops_dashboard import COOKIE, add_ops_dashboard_routes
from gateway.payments_api import add_payment_api_routes
from gateway.settings import Settings
from gateway.webhooks_api import add_webhook_api_routes
from payments.api_keys import CALLER, OPERATOR, ApiKeyHasher, create_api_key
from tests.integration.payments_helpers import PaymentsWorld, api_client

PEPPER = "operators-test-pepper"


def ops_client() -> tuple[Any, Any]:
    """Module fixtures ``client`` (the payments, webhook and operator APIs and the dashboard, over
    the module's ``world``) and ``ops_key`` (an operator's key): ``client, ops_key = ops_client()``."""

    @pytest.fixture(scope="module")
    async def client(world: PaymentsWorld) -> AsyncIterator[TestClient]:
        settings = Settings.model_validate({"api": {"key_pepper": PEPPER}, "webhooks": {"allow_local_urls": True}})
        async with api_client(world, settings, add_payment_api_routes, add_webhook_api_routes, add_ops_api_routes,
                              add_ops_dashboard_routes) as test_client:
            yield test_client

    @pytest.fixture(scope="module")
    async def ops_key(world: PaymentsWorld) -> str:
        return await new_key(world, role=OPERATOR)

    return client, ops_key


async def new_key(world: PaymentsWorld, *, role: str = CALLER, name: str = "Alice") -> str:
    async with world.engine.begin() as conn:
        return (await create_api_key(conn, ApiKeyHasher(PEPPER), name, role=role)).secret


async def call(client: TestClient, method: str, path: str, key: str, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body)
    async with client.request(method, path, data=data,
                              headers={"Authorization": f"Bearer {key}", **(headers or {})}) as answer:
        return answer.status, await answer.json()


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


async def sign_in_token(client: TestClient) -> str:
    """Open the sign-in page, as a browser does first: its form's token (its cookie is kept)."""
    async with client.get("/ops/sign-in") as answer:
        return re.search(r'name="sign_in_token" value="([^"]+)"', await answer.text()).group(1)


async def sign_in(client: TestClient, key: str) -> str:
    """Sign in with ``key``; returns the overview page's HTML."""
    token = await sign_in_token(client)
    async with client.post("/ops/sign-in", data={"key": key, "sign_in_token": token},
                           allow_redirects=False) as answer:
        assert answer.status == 303, await answer.text()
        cookie = answer.cookies[COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/ops"
    async with client.get("/ops") as answer:
        assert answer.status == 200
        return await answer.text()


async def sign_out(client: TestClient) -> None:
    async with client.get("/ops") as answer:
        page = await answer.text()
    async with client.post("/ops/sign-out", data={"csrf": csrf_of(page)}, allow_redirects=False) as answer:
        assert answer.status == 303 and answer.headers["Location"] == "/ops/sign-in"
    client.session.cookie_jar.clear()




@contextmanager
def statements_run(engine: AsyncEngine) -> Iterator[list[tuple[str, Any]]]:
    """Every statement ``engine`` sends while the block runs, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def plans_without_seq_scans(engine: AsyncEngine, statements: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    """Each statement with its plan, PostgreSQL told not to scan tables (it then picks an index
    whenever one can serve): asserts that no plan still reads a whole table."""
    plans = []
    async with engine.connect() as conn:
        await conn.exec_driver_sql("SET enable_seqscan = off")
        for statement, parameters in statements:
            plan = "\n".join(row[0] for row in await conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))
            assert "Seq Scan" not in plan, f"{statement}\n{plan}"
            plans.append((statement, plan))
    return plans
