"""The journeys Sauti serves, assembled and validated in one place: registration, the customer's
menu (with the payment intents merchants send, `dialogs.intent_journeys`), and whatever a role adds
(an agent's menu: its journey, its actions, and its role placed before ``customer`` in ``homes``,
so agents start there)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dialogs.agent_actions import AgentActions, agent_validators
from dialogs.agent_journeys import AGENT, AGENT_CASH
from dialogs.catalog import Catalogs, screen_catalogs
from dialogs.customer_actions import CustomerActions, Services
from dialogs.customer_journeys import CONDITIONS, CUSTOMER, REGISTRATION
from dialogs.intent_actions import IntentActions
from dialogs.intent_journeys import INTENTS
from dialogs.journey import JourneySet, build_journeys
from dialogs.screens import Journey
from dialogs.steps import ActionSpec, Condition
from dialogs.validators import customer_validators
from payments.agents import AgentService


def sauti_journeys(
    services: Services | None, *, pin_length: int = 4, catalogs: Catalogs | None = None,
    agents: AgentService | None = None,
    extra_journeys: Sequence[Journey] = (), extra_actions: Mapping[str, ActionSpec] | None = None,
    extra_homes: Sequence[tuple[str, str]] = (), extra_conditions: Mapping[str, Condition] | None = None,
) -> JourneySet:
    """Every journey, checked (`dialogs.journey.JourneyError` names each problem). ``services`` (and
    ``agents``, for the agent menu and cash at an agent) are None to draw or check the journeys
    without a database."""
    catalogs = catalogs or screen_catalogs()
    customer = CustomerActions(services)
    actions = {**customer.table(), **AgentActions(agents, catalogs).table(),
               **IntentActions(customer, catalogs).table(), **(extra_actions or {})}
    return build_journeys(
        [REGISTRATION, CUSTOMER, AGENT, AGENT_CASH, INTENTS, *extra_journeys], registration=REGISTRATION.name,
        homes=[*extra_homes, ("agent", AGENT.name), ("customer", CUSTOMER.name)], catalogs=catalogs,
        actions=actions,
        validators={**customer_validators(services.pins if services else None, pin_length), **agent_validators()},
        conditions={**CONDITIONS, **(extra_conditions or {})})
