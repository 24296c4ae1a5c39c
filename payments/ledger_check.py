"""`sauti ledger check`: every money invariant of DESIGN.md re-checked over the whole database.

Each check is a query that returns the rows violating one invariant; the report lists every check,
how many violations it found and a few examples. The database's own constraints should make every
count zero: this is the independent audit that proves it (beancount re-checks its invariants at the
end in the same spirit).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from payments.accounts import AccountKind


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    invariant: str
    sql: str


CHECKS: tuple[Check, ...] = (
    Check("postings_in_account_currency", "every posting is in its account's currency",
          "SELECT p.id, p.currency, a.currency FROM postings p JOIN accounts a ON a.id = p.account_id "
          "WHERE p.currency <> a.currency"),
    Check("postings_reference_real_rows", "every posting belongs to an existing transfer and account",
          "SELECT p.id, p.transfer_id, p.account_id FROM postings p "
          "LEFT JOIN transfers t ON t.id = p.transfer_id LEFT JOIN accounts a ON a.id = p.account_id "
          "WHERE t.id IS NULL OR a.id IS NULL"),
    Check("transfers_balance", "every transfer's postings sum to zero in each currency",
          "SELECT transfer_id, currency, sum(amount) FROM postings GROUP BY transfer_id, currency "
          "HAVING sum(amount) <> 0"),
    Check("transfers_have_two_legs", "every transfer has at least two postings",
          "SELECT t.id, count(p.id) FROM transfers t LEFT JOIN postings p ON p.transfer_id = t.id "
          "GROUP BY t.id HAVING count(p.id) < 2"),
    Check("balances_equal_postings", "every account's balance is the sum of its postings",
          "SELECT a.id, a.balance, coalesce(s.total, 0) FROM accounts a LEFT JOIN "
          "(SELECT account_id, sum(amount) AS total FROM postings GROUP BY account_id) s ON s.account_id = a.id "
          "WHERE a.balance <> coalesce(s.total, 0)"),
    Check("balance_after_is_running_total", "each posting records its account's balance after it",
          "SELECT id, account_id, balance_after, running FROM (SELECT id, account_id, balance_after, "
          "sum(amount) OVER (PARTITION BY account_id ORDER BY id) AS running FROM postings) s "
          "WHERE balance_after <> running"),
    Check("no_overdraft", "no wallet, float or other non-negative account is below zero (after holds)",
          "SELECT id, code, balance, held FROM accounts "
          "WHERE NOT may_go_negative AND (balance < 0 OR balance - held < 0)"),
    Check("owned_accounts_never_negative", "accounts holding people's money are never allowed to go negative",
          "SELECT id, code FROM accounts WHERE may_go_negative "
          "AND kind IN ('customer_wallet', 'agent_float', 'agent_commission')"),
    # The rule is the code's (`AccountKind.may_go_negative`); the database only forbids the owned kinds,
    # so a provider clearing or fee revenue account flagged by hand could be overdrawn unnoticed.
    Check("sign_rule_follows_kind", "an account may go negative exactly when its kind may",
          "SELECT id, kind, may_go_negative FROM accounts WHERE may_go_negative <> (kind IN ("
          + ", ".join(f"'{kind.value}'" for kind in AccountKind if kind.may_go_negative) + "))"),
    Check("held_equals_pending_holds", "each account's reserved amount equals its pending holds' debits",
          "SELECT a.id, a.held, coalesce(h.total, 0) FROM accounts a LEFT JOIN "
          "(SELECT (l->>'a')::bigint AS account_id, -sum(least((l->>'m')::bigint, 0)) AS total "
          " FROM holds, jsonb_array_elements(legs) l WHERE status = 'pending' GROUP BY 1) h "
          "ON h.account_id = a.id WHERE a.held <> coalesce(h.total, 0)"),
    Check("posted_holds_have_one_transfer", "a posted hold has exactly one transfer; a pending or voided one none",
          "SELECT h.id, h.status, count(t.id) FROM holds h LEFT JOIN transfers t ON t.hold_id = h.id "
          "GROUP BY h.id, h.status HAVING count(t.id) <> CASE WHEN h.status = 'posted' THEN 1 ELSE 0 END"),
    Check("reversals_mirror_originals", "a reversal's postings are exactly the original's, negated",
          "SELECT r.id, r.reverses_transfer_id FROM transfers r WHERE r.reverses_transfer_id IS NOT NULL AND EXISTS ("
          "(SELECT account_id, -amount FROM postings WHERE transfer_id = r.reverses_transfer_id "
          " EXCEPT ALL SELECT account_id, amount FROM postings WHERE transfer_id = r.id) UNION ALL "
          "(SELECT account_id, amount FROM postings WHERE transfer_id = r.id "
          " EXCEPT ALL SELECT account_id, -amount FROM postings WHERE transfer_id = r.reverses_transfer_id))"),
    Check("shards_match_their_parent", "a hot account's shards share its kind, currency and sign rule",
          "SELECT s.id, s.shard_of FROM accounts s JOIN accounts p ON p.id = s.shard_of "
          "WHERE s.kind <> p.kind OR s.currency <> p.currency OR s.may_go_negative <> p.may_go_negative "
          "OR NOT s.id = ANY(p.shards)"),
    # The other way round: `balance()` adds up every account a parent lists, so a listed account that
    # is not its shard (a wallet) would be counted as the parent's money, and swept into it.
    Check("shard_lists_name_only_their_shards", "every account a hot account lists as its shard is its shard",
          "SELECT p.id, l.id, s.shard_of FROM accounts p CROSS JOIN LATERAL unnest(p.shards) AS l(id) "
          "LEFT JOIN accounts s ON s.id = l.id WHERE s.shard_of IS DISTINCT FROM p.id"),
    Check("suspense_waiting_is_what_no_one_released",
          "the money waiting in suspense is every park with no release and no credit in progress",
          "SELECT t.id, t.reference FROM transfers t LEFT JOIN suspense_waiting w ON w.transfer_id = t.id "
          "LEFT JOIN transfers r ON r.idempotency_key = 'release:' || t.reference "
          "LEFT JOIN payments pay ON pay.provider = 'mpesa' AND pay.provider_ref = t.reference "
          "AND pay.provider_refs ? 'parked_by' AND pay.status IN ('created', 'pending', 'processing') "
          "WHERE t.idempotency_key LIKE 'suspense:%' AND (w.transfer_id IS NULL) = (r.id IS NULL AND pay.id IS NULL) "
          "UNION ALL SELECT w.transfer_id, w.receipt FROM suspense_waiting w LEFT JOIN transfers t "
          "ON t.id = w.transfer_id WHERE t.id IS NULL OR t.idempotency_key <> 'suspense:' || w.receipt"),
    Check("suspense_holds_what_is_parked", "the suspense accounts hold exactly the money parked and not released",
          "SELECT cur, held, parked FROM "
          "(SELECT currency AS cur, sum(balance) AS held FROM accounts WHERE kind = 'suspense' GROUP BY currency) a "
          "FULL JOIN (SELECT p.currency AS cur, sum(p.amount) AS parked FROM transfers t "
          "JOIN postings p ON p.transfer_id = t.id AND p.amount > 0 "
          "LEFT JOIN transfers r ON r.idempotency_key = 'release:' || t.reference "
          "WHERE t.idempotency_key LIKE 'suspense:%' AND r.id IS NULL GROUP BY p.currency) b USING (cur) "
          "WHERE coalesce(held, 0) <> coalesce(parked, 0)"),
    Check("currency_sums_to_zero", "across all accounts of a currency, balances sum to zero",
          "SELECT currency, sum(balance) FROM accounts GROUP BY currency HAVING sum(balance) <> 0"),
)


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: Check
    violations: int
    examples: tuple[tuple, ...]

    @property
    def ok(self) -> bool:
        return self.violations == 0


@dataclass(frozen=True, slots=True)
class LedgerReport:
    results: tuple[CheckResult, ...]
    accounts: int
    transfers: int
    postings: int

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def violations(self) -> int:
        return sum(r.violations for r in self.results)

    def render(self) -> str:
        lines = [f"Ledger check over {self.accounts} accounts, {self.transfers} transfers, "
                 f"{self.postings} postings:"]
        for r in self.results:
            mark = "ok  " if r.ok else "FAIL"
            lines.append(f"  {mark}  {r.check.invariant}" + ("" if r.ok else f"  ({r.violations} violations)"))
            lines.extend(f"          e.g. {example}" for example in r.examples)
        lines.append("All invariants hold." if self.ok else f"{self.violations} violation(s) found.")
        return "\n".join(lines)


async def check_ledger(engine: AsyncEngine, *, examples: int = 5) -> LedgerReport:
    """Run every check in one repeatable-read, read-only snapshot of its own connection, so
    concurrent writes can neither fake a violation nor be blocked by the audit."""
    async with engine.connect() as plain:
        conn = await plain.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        results = []
        for check in CHECKS:
            rows = (await conn.execute(text(check.sql))).all()
            results.append(CheckResult(check, len(rows), tuple(tuple(r) for r in rows[:examples])))
        counts = (await conn.execute(text(
            "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM transfers), (SELECT count(*) FROM postings)"
        ))).one()
    return LedgerReport(tuple(results), *counts)
