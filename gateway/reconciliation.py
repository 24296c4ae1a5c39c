"""Reconciliation as operators start it, said once for `sauti reconcile` and the operators'
(``POST /v1/ops/reconciliations``, ``/ops/reconcile``): the period's bounds as people write them, and
which provider statements to read (`payments.reconcile` does the matching).

- Wave: its transactions API, with the configured (or sandbox) credentials.
- M-Pesa: Daraja has no statement API. The organisation statement downloaded from the M-Pesa portal
  as CSV is given (a file to the CLI, an upload to the dashboard and the API); in sandbox mode, with
  none given, the sandbox's books are read instead.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from gateway.payments_resources import PaymentsRuntime
from payments.errors import InvalidRequest, PaymentsError
from payments.provider_statements import MPESA, WAVE, DarajaSandboxStatement, StatementSource, WaveStatement

PROVIDERS = (MPESA, WAVE)
#: The longest period the operators' API and dashboard reconcile at once (a request waits for it);
#: `sauti reconcile` takes any.
MAX_PERIOD = timedelta(days=31)


class CannotReconcile(InvalidRequest):
    """No statement to read for what was asked (M-Pesa with no statement given outside sandbox mode)."""

    code = "cannot_reconcile"


class StatementUnavailable(PaymentsError):
    """A provider's statement could not be read (Wave's API down, say): nothing was reconciled."""

    code = "statement_unavailable"


def moment(text: str) -> datetime:
    """An ISO 8601 date (its midnight) or date and time; UTC when it carries no offset."""
    value = text.strip() if isinstance(text, str) else ""
    try:
        found = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            found = datetime.combine(date.fromisoformat(value), datetime.min.time())
        except ValueError:
            raise InvalidRequest(f"{value[:40]!r} is not an ISO 8601 date or date and time "
                                 "(2026-01-31, or 2026-01-31T00:00:00+03:00)") from None
    if not 2000 <= found.year <= 2100:
        raise InvalidRequest(f"{value[:40]!r} is not a date between the years 2000 and 2100")
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def statement_sources(runtime: PaymentsRuntime | None, provider: str | None, mpesa: StatementSource | None, *,
                      mpesa_how: str) -> tuple[list[StatementSource], list[str]]:
    """The statements to read for ``provider`` (None: every provider with one), and why any was
    left out. ``mpesa``: the M-Pesa statement given, if any; ``mpesa_how`` tells how to give one."""
    if provider is not None and provider not in PROVIDERS:
        raise InvalidRequest(f"provider is {' or '.join(PROVIDERS)}")
    if provider == WAVE and mpesa is not None:
        raise InvalidRequest("an M-Pesa statement goes with M-Pesa, not provider wave")
    sources: list[StatementSource] = []
    skipped: list[str] = []
    if provider in (None, MPESA):
        if mpesa is not None:
            sources.append(mpesa)
        elif runtime is not None and runtime.sandbox_urls is not None:
            sources.append(DarajaSandboxStatement(runtime.sandbox_urls.daraja))
        else:
            skipped.append("M-Pesa: Daraja has no statement API; download the organisation statement (CSV) "
                           f"from the M-Pesa portal and {mpesa_how}")
    if provider in (None, WAVE):
        wave = runtime.payments.providers.wave if runtime is not None else None
        if wave is not None:
            sources.append(WaveStatement(wave))
        else:
            skipped.append("Wave: not configured (providers.wave), or sandboxes this process cannot reach "
                           "(providers.sandbox.port_base)")
    return sources, skipped
