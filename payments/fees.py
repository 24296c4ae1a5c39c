"""Fees, limits and quotes: what a payment costs and whether it is allowed, before anything moves.

Fee plans follow the seeds' subscription plans: a percentage per transaction and a monthly
transaction allowance (free 2 % and 5 a month, basic 1 % and 50, pro 0.5 % and business 0.3 %
unlimited). Limits: a per-transaction maximum and a daily total per KYC tier, per currency.
Percentages are integer basis points and fees are rounded *up* to a whole unit the providers can
move (M-Pesa and Wave have no cents), so no float ever touches an amount.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from payments.errors import AmountOutOfRange, PaymentsError
from payments.money import Currency, Money


class LimitExceeded(PaymentsError):
    code = "limit_exceeded"


@dataclass(frozen=True, slots=True)
class FeePlan:
    name: str
    basis_points: int  # 100 = 1 %
    monthly_allowance: int | None  # transactions a month; None = unlimited

    def __post_init__(self) -> None:
        if not 0 <= self.basis_points <= 10_000:
            raise ValueError(f"fee plan {self.name}: basis points must be 0 to 10000")
        if self.monthly_allowance is not None and self.monthly_allowance < 0:
            raise ValueError(f"fee plan {self.name}: the monthly allowance cannot be negative")

    def fee_for(self, amount: Money) -> Money:
        """The plan's percentage of ``amount``, rounded up to a whole major unit."""
        unit = amount.currency.minor_per_major
        raw = amount.minor * self.basis_points
        whole_units = -(-raw // (10_000 * unit))  # ceiling division, integers only
        return Money(whole_units * unit, amount.currency)


DEFAULT_PLANS: Mapping[str, FeePlan] = MappingProxyType({
    "free": FeePlan("free", 200, 5),
    "basic": FeePlan("basic", 100, 50),
    "pro": FeePlan("pro", 50, None),
    "business": FeePlan("business", 30, None),
})


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-transaction maximum and daily totals by KYC tier, in major units per currency."""

    per_transaction_max: Mapping[Currency, int]
    daily_by_tier: Mapping[int, Mapping[Currency, int]]

    def check(self, amount: Money, *, kyc_tier: int, spent_today: Money) -> None:
        self.check_amount(amount)
        tier_caps = self.daily_by_tier.get(kyc_tier) or self.daily_by_tier.get(max(self.daily_by_tier, default=0))
        daily = (tier_caps or {}).get(amount.currency)
        if daily is not None and (spent_today + amount).minor > daily * amount.currency.minor_per_major:
            left = Money(max(0, daily * amount.currency.minor_per_major - spent_today.minor), amount.currency)
            raise LimitExceeded(f"daily limit reached: {left} left today at your verification level")


    def check_amount(self, amount: Money) -> None:
        """What any one payment may move, whoever makes it: more than zero, at most the cap."""
        if amount.minor <= 0:
            raise AmountOutOfRange("the amount must be more than zero")
        cap = self.per_transaction_max.get(amount.currency)
        if cap is not None and amount.minor > cap * amount.currency.minor_per_major:
            raise AmountOutOfRange(f"one payment can be at most {Money.of(cap, amount.currency)}")


DEFAULT_LIMITS = Limits(
    per_transaction_max=MappingProxyType({Currency.KES: 999_999, Currency.XOF: 999_999}),
    daily_by_tier=MappingProxyType({
        0: MappingProxyType({Currency.KES: 70_000, Currency.XOF: 200_000}),
        1: MappingProxyType({Currency.KES: 300_000, Currency.XOF: 1_000_000}),
        2: MappingProxyType({Currency.KES: 1_000_000, Currency.XOF: 5_000_000}),
        3: MappingProxyType({Currency.KES: 5_000_000, Currency.XOF: 20_000_000}),
    }),
)


@dataclass(frozen=True, slots=True)
class Quote:
    """What the payer sees before confirming: amount, fee, total, and who receives it."""

    amount: Money
    fee: Money
    plan: str
    recipient_name: str | None = None

    @property
    def total(self) -> Money:
        return self.amount + self.fee


def quote(
    amount: Money,
    plan: FeePlan,
    *,
    limits: Limits,
    kyc_tier: int,
    spent_today: Money,
    transactions_this_month: int,
    recipient_name: str | None = None,
    incoming: bool = False,
) -> Quote:
    """Price a payment and check it against the limits and the plan's allowance; raises
    `LimitExceeded` / `AmountOutOfRange` with a sentence a person can act on.

    ``incoming``: money coming into the wallet (a deposit, a cash-in). It is free and no payment of
    the plan's allowance, and it is limited per transaction only, with nothing counted as spent
    today: what one may spend is limited, not what comes in (the commands check it so, and the
    quote shown first must not refuse what they take)."""
    if incoming:
        limits.check(amount, kyc_tier=kyc_tier, spent_today=Money.zero(amount.currency))
        return Quote(amount, Money.zero(amount.currency), plan.name, recipient_name)
    limits.check(amount, kyc_tier=kyc_tier, spent_today=spent_today)
    if plan.monthly_allowance is not None and transactions_this_month >= plan.monthly_allowance:
        raise LimitExceeded(f"the {plan.name} plan allows {plan.monthly_allowance} payments a month; "
                            "upgrade your plan to send more")
    return Quote(amount, plan.fee_for(amount), plan.name, recipient_name)
