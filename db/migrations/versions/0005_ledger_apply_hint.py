"""Ledger: shard routing moves to Python, and batches that say they are independent skip a pass.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

`ledger_apply(ops)` becomes `ledger_apply(ops, independent)`:
- It no longer rewrites credits to sharded accounts (`payments.shard_routing` does it before the op
  is sent, from a cached shard list), so finding what a batch touches is one pass with no join.
- ``independent`` is the caller's claim that the batch is all transfers with distinct keys and that
  no account one op debits is touched by another (`payments.shard_routing.independent`). Then every
  op takes the set-wise path without the pass that looks for such accounts. IMPORTANT: the claim is
  only a hint. Operation kinds and key uniqueness are still checked here, and an overdraft it missed
  would fail the accounts' non-negative CHECK, failing the batch, whose ops the caller then retries
  one by one; a wrong hint can cost time, never money.
"""

import re
from pathlib import Path

from db.migration_scripts import run_script

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UP = r"""
DROP FUNCTION ledger_apply(jsonb);

-- IMPORTANT for speed: the planner guesses 100 rows for every jsonb_array_elements(), so it would
-- hash-join a batch's handful of legs against a full scan of accounts (milliseconds on 10,000
-- wallets). With hash and merge joins off inside the ledger, every account is found by its index.
CREATE FUNCTION ledger_apply(p_ops jsonb, p_independent boolean DEFAULT false) RETURNS jsonb LANGUAGE plpgsql
SET enable_hashjoin = off SET enable_mergejoin = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_holds bigint[];
    v_reversed bigint[];
    v_accounts bigint[];
    v_op jsonb;
    v_i bigint;
    v_bulk int[];
    v_unique boolean;
    v_bulk_results jsonb := '{}';
    v_out jsonb[] := '{}';
BEGIN
    -- What the batch touches, in one pass: the holds it resolves, the transfers it reverses, the
    -- accounts of its legs (already routed to shards by the caller), whether its keys are distinct
    -- and which ops are transfers.
    SELECT array_agg(DISTINCT (o->>'hold')::bigint) FILTER (WHERE o ? 'hold'),
           array_agg(DISTINCT (o->>'t')::bigint) FILTER (WHERE o->>'op' = 'reverse'),
           array_agg((x->>'a')::bigint) FILTER (WHERE x IS NOT NULL),
           count(DISTINCT o->>'key') = count(DISTINCT i),
           array_agg(DISTINCT i::int) FILTER (WHERE o->>'op' = 'transfer')
      INTO v_holds, v_reversed, v_accounts, v_unique, v_bulk
      FROM jsonb_array_elements(p_ops) WITH ORDINALITY AS t(o, i)
      LEFT JOIN LATERAL jsonb_array_elements(CASE WHEN o ? 'legs' THEN o->'legs' END) x ON true;

    -- IMPORTANT: lock everything the batch touches first, holds then accounts, each in id order.
    -- One global order means concurrent batches (from any process) queue instead of deadlocking.
    IF v_holds IS NOT NULL THEN
        PERFORM 1 FROM holds WHERE id = ANY(v_holds) ORDER BY id FOR UPDATE;
        v_accounts := v_accounts || ARRAY(
            SELECT (l->>'a')::bigint FROM holds h, jsonb_array_elements(h.legs) l WHERE h.id = ANY(v_holds));
    END IF;
    IF v_reversed IS NOT NULL THEN
        v_accounts := v_accounts || ARRAY(SELECT account_id FROM postings WHERE transfer_id = ANY(v_reversed));
    END IF;
    IF v_accounts IS NOT NULL THEN
        PERFORM 1 FROM accounts WHERE id = ANY(v_accounts) ORDER BY id FOR UPDATE;
    END IF;

    -- Which ops can take the set-wise fast path (see ledger_apply_bulk): transfers, whose keys
    -- appear once in the batch, and that take no money from an account another op touches.
    IF jsonb_array_length(p_ops) < 2 THEN
        v_bulk := NULL;
    ELSIF NOT (p_independent AND v_unique) THEN
        WITH o AS (
            SELECT i, op FROM jsonb_array_elements(p_ops) WITH ORDINALITY AS t(op, i)
        ), legs AS (
            SELECT o.i, (x->>'a')::bigint AS a, sum((x->>'m')::bigint) AS net
              FROM o, jsonb_array_elements(o.op->'legs') x WHERE o.op ? 'legs' GROUP BY 1, 2
        ), shared AS (
            SELECT a FROM legs GROUP BY a HAVING count(*) > 1
        ), blocked AS (
            SELECT legs.i FROM legs JOIN shared USING (a) JOIN accounts acc ON acc.id = legs.a
             WHERE legs.net < 0 AND NOT acc.may_go_negative
        ), repeated_keys AS (
            SELECT op->>'key' AS k FROM o GROUP BY 1 HAVING count(*) > 1
        )
        SELECT array_agg(i) INTO v_bulk FROM o
         WHERE op->>'op' = 'transfer'
           AND NOT EXISTS (SELECT 1 FROM blocked b WHERE b.i = o.i)
           AND NOT EXISTS (SELECT 1 FROM repeated_keys r WHERE r.k = o.op->>'key');
    END IF;
    IF cardinality(v_bulk) > 1 THEN
        v_bulk_results := ledger_apply_bulk(p_ops, v_bulk);
    END IF;

    FOR v_op, v_i IN SELECT * FROM jsonb_array_elements(p_ops) WITH ORDINALITY LOOP
        IF v_bulk_results ? v_i::text THEN
            v_out := v_out || (v_bulk_results->(v_i::text));
            CONTINUE;
        END IF;
        v_out := v_out || CASE v_op->>'op'
            WHEN 'transfer' THEN ledger_transfer(v_op, v_op->'legs', NULL)
            WHEN 'reverse' THEN ledger_reverse(v_op)
            WHEN 'hold' THEN ledger_hold(v_op)
            WHEN 'post_hold' THEN ledger_resolve_hold(v_op)
            WHEN 'void_hold' THEN ledger_resolve_hold(v_op)
        END;
        IF v_out[array_length(v_out, 1)] IS NULL THEN
            RAISE EXCEPTION 'ledger: unknown operation %', v_op->>'op' USING ERRCODE = 'check_violation';
        END IF;
    END LOOP;
    RETURN to_jsonb(v_out);
END $$;
"""


def _previous_definition() -> str:
    """The 0001 `ledger_apply(jsonb)`, for the downgrade (read from that migration, not copied)."""
    source = (Path(__file__).parent / "0001_foundation.py").read_text(encoding="utf-8")
    found = re.search(r"(CREATE FUNCTION ledger_apply\(p_ops jsonb\).*?END \$\$;)", source, re.DOTALL)
    assert found, "0001's ledger_apply not found"
    return found.group(1)


def upgrade() -> None:
    run_script(UP)


def downgrade() -> None:
    run_script("DROP FUNCTION ledger_apply(jsonb, boolean);\n" + _previous_definition())
