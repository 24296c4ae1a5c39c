"""The journeys Sauti serves, assembled and validated in one place: registration, the customer's
menu, and whatever a role adds (an agent's menu: its journey, its actions, and its role placed
before ``customer`` in ``homes``, so agents start there)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dialogs.catalog import Catalogs, load_catalogs
from dialogs.customer_actions import CustomerActions, Services
from dialogs.customer_journeys import CONDITIONS, CUSTOMER, REGISTRATION
from dialogs.journey import JourneySet, build_journeys
from dialogs.screens import Journey
from dialogs.steps import ActionSpec, Condition
from dialogs.validators import customer_validators


def sauti_journeys(
    services: Services | None, *, pin_length: int = 4, catalogs: Catalogs | None = None,
    extra_journeys: Sequence[Journey] = (), extra_actions: Mapping[str, ActionSpec] | None = None,
    extra_homes: Sequence[tuple[str, str]] = (), extra_conditions: Mapping[str, Condition] | None = None,
) -> JourneySet:
    """Every journey, checked (`dialogs.journey.JourneyError` names each problem). ``services`` is
    None to draw or check the journeys without a database."""
    actions = {**CustomerActions(services).table(), **(extra_actions or {})}
    return build_journeys(
        [REGISTRATION, CUSTOMER, *extra_journeys], registration=REGISTRATION.name,
        homes=[*extra_homes, ("customer", CUSTOMER.name)], catalogs=catalogs or load_catalogs(), actions=actions,
        validators=customer_validators(services.pins if services else None, pin_length),
        conditions={**CONDITIONS, **(extra_conditions or {})})
