"""Foundation: users and PIN locks, audit log, accounts, transfers, postings, holds, and the ledger's
SQL functions.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

The ledger is written by one SQL function, `ledger_apply(ops jsonb)`, which applies a batch of
operations (transfer, hold, post_hold, void_hold, reverse) in the caller's transaction with one round
trip. It locks every hold and account the batch touches up front, in id order, so concurrent batches
never deadlock; it then checks and applies each operation in turn and returns one result per
operation. Problems that depend on the data (unknown account, insufficient funds, idempotency
conflict, a hold already resolved) come back as results; malformed requests (unbalanced legs, zero
amounts) raise, because Python validates them before they get here.
"""

from db.migration_scripts import run_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = r"""
CREATE TABLE users (
    id bigserial PRIMARY KEY,
    phone varchar(16) NOT NULL UNIQUE CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    display_name text NOT NULL DEFAULT '',
    language varchar(2) NOT NULL DEFAULT 'en' CHECK (language IN ('en', 'sw', 'fr', 'wo')),
    roles text[] NOT NULL DEFAULT '{customer}'
        CHECK (roles <@ ARRAY['customer', 'agent', 'merchant', 'admin']::text[] AND cardinality(roles) > 0),
    kyc_tier smallint NOT NULL DEFAULT 0 CHECK (kyc_tier BETWEEN 0 AND 3),
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'locked', 'closed')),
    pin_hash text,
    failed_pin_attempts integer NOT NULL DEFAULT 0 CHECK (failed_pin_attempts >= 0),
    locked_until timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_locks (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users(id),
    reason text NOT NULL,
    locked_at timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz NOT NULL,
    unlocked_at timestamptz
);
CREATE INDEX ix_user_locks_user_id ON user_locks (user_id);

CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL,
    subject text NOT NULL,
    details jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE accounts (
    id bigserial PRIMARY KEY,
    code text NOT NULL UNIQUE,
    owner_user_id bigint REFERENCES users(id),
    kind text NOT NULL CHECK (kind IN ('customer_wallet', 'agent_float', 'agent_commission', 'fee_revenue',
        'provider_collection', 'provider_clearing', 'provider_settlement', 'suspense')),
    currency varchar(3) NOT NULL CHECK (currency IN ('KES', 'XOF')),
    may_go_negative boolean NOT NULL,
    balance bigint NOT NULL DEFAULT 0,
    held bigint NOT NULL DEFAULT 0 CHECK (held >= 0),
    -- Hot accounts (the fee account every transfer credits) can be split into shards: credits to
    -- the parent land on one of its shard accounts, so concurrent batches do not queue on one row.
    shard_of bigint REFERENCES accounts(id),
    shards bigint[],
    created_at timestamptz NOT NULL DEFAULT now(),
    -- IMPORTANT: the database, not Python, keeps wallets and floats from going negative.
    CONSTRAINT accounts_no_overdraft CHECK (may_go_negative OR balance - held >= 0),
    -- Wallets, floats and commission accounts hold people's money: they can never be allowed to go negative.
    CONSTRAINT accounts_owned_kinds_never_negative CHECK (
        NOT may_go_negative OR kind NOT IN ('customer_wallet', 'agent_float', 'agent_commission'))
) WITH (fillfactor = 70);  -- room on each page for HOT updates: balances change on every transfer

CREATE TABLE transfers (
    id bigserial PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    request_hash text NOT NULL,
    kind text NOT NULL,
    reference text,
    reverses_transfer_id bigint REFERENCES transfers(id),
    hold_id bigint,
    metadata jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
-- A transfer is reversed at most once (partial: the many NULLs need no index entries).
CREATE UNIQUE INDEX transfers_reversed_once ON transfers (reverses_transfer_id)
    WHERE reverses_transfer_id IS NOT NULL;

-- Postings carry no foreign keys on purpose: only ledger_apply writes them, right after locking
-- their accounts and inserting their transfer, and the per-row RI checks cost a third of a
-- transfer's time. Accounts and transfers are never deleted (triggers below), and
-- `sauti ledger check` verifies that every posting's account and transfer exist.
CREATE TABLE postings (
    id bigserial PRIMARY KEY,
    transfer_id bigint NOT NULL,
    account_id bigint NOT NULL,
    amount bigint NOT NULL CHECK (amount <> 0),
    currency varchar(3) NOT NULL,
    balance_after bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_postings_transfer_id ON postings (transfer_id);
CREATE INDEX postings_account_history ON postings (account_id, id);

CREATE TABLE holds (
    id bigserial PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    request_hash text NOT NULL,
    kind text NOT NULL,
    reference text,
    legs jsonb NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'posted', 'voided')),
    transfer_id bigint REFERENCES transfers(id),
    metadata jsonb NOT NULL DEFAULT '{}',
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    CHECK ((status = 'posted') = (transfer_id IS NOT NULL))
);
CREATE INDEX ix_holds_pending_expiry ON holds (expires_at) WHERE status = 'pending';

-- IMPORTANT: postings and transfers are append-only; a correction is a new, reversing transfer.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % rows are never changed or removed (% refused); post a reversing transfer instead',
        TG_TABLE_NAME, TG_OP USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER transfers_append_only BEFORE UPDATE OR DELETE ON transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER transfers_no_truncate BEFORE TRUNCATE ON transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
-- Accounts change balance but are never removed (closing one is a status, not a delete).
CREATE TRIGGER accounts_never_deleted BEFORE DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
"""

FUNCTIONS = r"""
-- Structural checks: Python validates these first; reaching them here is a bug, so they raise.
CREATE FUNCTION ledger_assert_well_formed(p_legs jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_bad text;
BEGIN
    IF jsonb_typeof(p_legs) <> 'array' OR jsonb_array_length(p_legs) < 2 THEN
        RAISE EXCEPTION 'ledger: a transfer needs at least two legs' USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(p_legs) l WHERE (l->>'m')::bigint = 0) THEN
        RAISE EXCEPTION 'ledger: zero-amount leg' USING ERRCODE = 'check_violation';
    END IF;
    SELECT string_agg(c, ', ') INTO v_bad FROM (
        SELECT l->>'c' AS c FROM jsonb_array_elements(p_legs) l GROUP BY l->>'c'
        HAVING sum((l->>'m')::bigint) <> 0) s;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'ledger: legs do not balance in %', v_bad USING ERRCODE = 'check_violation';
    END IF;
END $$;

-- Data checks against locked accounts; NULL when the legs can be applied, else an error result.
-- p_reserve: check only the debits (a hold reserves them) instead of the net movement.
CREATE FUNCTION ledger_legs_problem(p_legs jsonb, p_reserve boolean) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT l.a, l.c, sum(l.m) AS net, sum(least(l.m, 0)) AS debits,
               acc.id AS found, acc.currency, acc.balance, acc.held, acc.may_go_negative
        FROM (SELECT (x->>'a')::bigint AS a, (x->>'m')::bigint AS m, x->>'c' AS c
              FROM jsonb_array_elements(p_legs) x) l
        LEFT JOIN accounts acc ON acc.id = l.a
        GROUP BY l.a, l.c, acc.id
    LOOP
        IF r.found IS NULL THEN
            RETURN jsonb_build_object('s', 'unknown_account', 'account', r.a);
        ELSIF r.currency <> r.c THEN
            RETURN jsonb_build_object('s', 'currency_mismatch', 'account', r.a,
                                      'expected', r.currency, 'got', r.c);
        ELSIF NOT r.may_go_negative
              AND r.balance - r.held + (CASE WHEN p_reserve THEN r.debits ELSE r.net END) < 0 THEN
            RETURN jsonb_build_object('s', 'insufficient_funds', 'account', r.a,
                                      'available', r.balance - r.held,
                                      'needed', -(CASE WHEN p_reserve THEN r.debits ELSE r.net END));
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

-- Applies legs to locked accounts and writes the postings, in one statement: each account is
-- updated once by its net movement, and each posting's balance_after is that new balance less the
-- account's later legs in this transfer (so repeated accounts still get running balances).
-- p_release: the legs were reserved by a hold, so the reservation is released in the same update
-- (balance - held stays the same).
CREATE FUNCTION ledger_write_postings(p_transfer bigint, p_legs jsonb, p_release boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_out jsonb;
BEGIN
    WITH l AS (
        SELECT (x->>'a')::bigint AS a, (x->>'m')::bigint AS m, x->>'c' AS c, n
          FROM jsonb_array_elements(p_legs) WITH ORDINALITY AS t(x, n)
    ), upd AS (
        UPDATE accounts acc
           SET balance = acc.balance + d.net, held = acc.held + d.release
          FROM (SELECT a, sum(m) AS net,
                       sum(CASE WHEN p_release THEN least(m, 0) ELSE 0 END) AS release
                  FROM l GROUP BY a) d
         WHERE acc.id = d.a
        RETURNING acc.id, acc.balance
    ), ins AS (
        INSERT INTO postings (transfer_id, account_id, amount, currency, balance_after)
        SELECT p_transfer, l.a, l.m, l.c,
               upd.balance - coalesce(sum(l.m) OVER (PARTITION BY l.a ORDER BY l.n
                                      ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING), 0)
          FROM l JOIN upd ON upd.id = l.a
         ORDER BY l.n
        RETURNING id, account_id, amount, balance_after
    )
    SELECT jsonb_agg(jsonb_build_array(account_id, amount, balance_after) ORDER BY id) INTO v_out FROM ins;
    RETURN v_out;
END $$;

CREATE FUNCTION ledger_postings_of(p_transfer bigint) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_array(account_id, amount, balance_after) ORDER BY id), '[]')
    FROM postings WHERE transfer_id = p_transfer
$$;

-- An existing transfer under this key: the same request replays it, a different one conflicts.
CREATE FUNCTION ledger_replay(p_key text, p_hash text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_hash text;
BEGIN
    SELECT id, request_hash INTO v_id, v_hash FROM transfers WHERE idempotency_key = p_key;
    IF v_id IS NULL THEN
        RETURN NULL;
    ELSIF v_hash = p_hash THEN
        RETURN jsonb_build_object('s', 'replayed', 't', v_id, 'p', ledger_postings_of(v_id));
    END IF;
    RETURN jsonb_build_object('s', 'conflict', 't', v_id);
END $$;

CREATE FUNCTION ledger_transfer(p_op jsonb, p_legs jsonb, p_reverses bigint) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_result jsonb;
    v_id bigint;
BEGIN
    v_result := ledger_replay(p_op->>'key', p_op->>'hash');
    IF v_result IS NOT NULL THEN
        RETURN v_result;
    END IF;
    PERFORM ledger_assert_well_formed(p_legs);
    v_result := ledger_legs_problem(p_legs, false);
    IF v_result IS NOT NULL THEN
        RETURN v_result;
    END IF;
    INSERT INTO transfers (idempotency_key, request_hash, kind, reference, reverses_transfer_id, metadata)
    VALUES (p_op->>'key', p_op->>'hash', p_op->>'kind', p_op->>'ref', p_reverses,
            coalesce(p_op->'meta', '{}'))
    ON CONFLICT DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        -- A concurrent transaction committed this key (or reversed this transfer) while we waited.
        v_result := ledger_replay(p_op->>'key', p_op->>'hash');
        RETURN coalesce(v_result, jsonb_build_object('s', 'already_reversed', 't', p_reverses));
    END IF;
    RETURN jsonb_build_object('s', 'ok', 't', v_id, 'p', ledger_write_postings(v_id, p_legs, false));
END $$;

CREATE FUNCTION ledger_reverse(p_op jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_original bigint := (p_op->>'t')::bigint;
    v_legs jsonb;
    v_existing bigint;
    v_result jsonb;
BEGIN
    v_result := ledger_replay(p_op->>'key', p_op->>'hash');
    IF v_result IS NOT NULL THEN
        RETURN v_result;
    END IF;
    SELECT jsonb_agg(jsonb_build_object('a', account_id, 'm', -amount, 'c', currency) ORDER BY id)
      INTO v_legs FROM postings WHERE transfer_id = v_original;
    IF v_legs IS NULL THEN
        RETURN jsonb_build_object('s', 'unknown_transfer', 't', v_original);
    END IF;
    SELECT id INTO v_existing FROM transfers WHERE reverses_transfer_id = v_original;
    IF v_existing IS NOT NULL THEN
        RETURN jsonb_build_object('s', 'already_reversed', 't', v_existing);
    END IF;
    RETURN ledger_transfer(p_op, v_legs, v_original);
END $$;

CREATE FUNCTION ledger_hold(p_op jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_hash text;
    v_status text;
    v_legs jsonb := p_op->'legs';
    v_result jsonb;
BEGIN
    SELECT id, request_hash, status INTO v_id, v_hash, v_status FROM holds WHERE idempotency_key = p_op->>'key';
    IF v_id IS NOT NULL THEN
        RETURN jsonb_build_object('s', CASE WHEN v_hash = p_op->>'hash' THEN 'replayed' ELSE 'conflict' END,
                                  'h', v_id, 'status', v_status);
    END IF;
    PERFORM ledger_assert_well_formed(v_legs);
    v_result := ledger_legs_problem(v_legs, true);
    IF v_result IS NOT NULL THEN
        RETURN v_result;
    END IF;
    INSERT INTO holds (idempotency_key, request_hash, kind, reference, legs, metadata, expires_at)
    VALUES (p_op->>'key', p_op->>'hash', p_op->>'kind', p_op->>'ref', v_legs, coalesce(p_op->'meta', '{}'),
            (p_op->>'expires')::timestamptz)
    ON CONFLICT DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        SELECT id, request_hash, status INTO v_id, v_hash, v_status FROM holds WHERE idempotency_key = p_op->>'key';
        RETURN jsonb_build_object('s', CASE WHEN v_hash = p_op->>'hash' THEN 'replayed' ELSE 'conflict' END,
                                  'h', v_id, 'status', v_status);
    END IF;
    -- Reserve the debits: they stay in the balance but can no longer be spent.
    UPDATE accounts a SET held = a.held - d.debit
      FROM (SELECT (x->>'a')::bigint AS a, sum(least((x->>'m')::bigint, 0)) AS debit
              FROM jsonb_array_elements(v_legs) x GROUP BY 1) d
     WHERE a.id = d.a AND d.debit <> 0;
    RETURN jsonb_build_object('s', 'ok', 'h', v_id, 'status', 'pending');
END $$;

CREATE FUNCTION ledger_resolve_hold(p_op jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_hold holds%ROWTYPE;
    v_id bigint;
    v_postings jsonb;
BEGIN
    SELECT * INTO v_hold FROM holds WHERE id = (p_op->>'hold')::bigint;
    IF v_hold.id IS NULL THEN
        RETURN jsonb_build_object('s', 'unknown_hold', 'h', p_op->>'hold');
    ELSIF v_hold.status <> 'pending' THEN
        RETURN jsonb_build_object('s', 'hold_' || v_hold.status, 'h', v_hold.id, 't', v_hold.transfer_id);
    END IF;
    IF p_op->>'op' = 'void_hold' THEN
        UPDATE accounts a SET held = a.held + d.debit
          FROM (SELECT (x->>'a')::bigint AS a, sum(least((x->>'m')::bigint, 0)) AS debit
                  FROM jsonb_array_elements(v_hold.legs) x GROUP BY 1) d
         WHERE a.id = d.a AND d.debit <> 0;
        UPDATE holds SET status = 'voided', resolved_at = now() WHERE id = v_hold.id;
        RETURN jsonb_build_object('s', 'ok', 'h', v_hold.id, 'status', 'voided');
    END IF;
    INSERT INTO transfers (idempotency_key, request_hash, kind, reference, hold_id, metadata)
    VALUES (v_hold.idempotency_key || ':post', v_hold.request_hash, v_hold.kind, v_hold.reference,
            v_hold.id, v_hold.metadata)
    RETURNING id INTO v_id;
    v_postings := ledger_write_postings(v_id, v_hold.legs, true);
    UPDATE holds SET status = 'posted', transfer_id = v_id, resolved_at = now() WHERE id = v_hold.id;
    RETURN jsonb_build_object('s', 'ok', 'h', v_hold.id, 'status', 'posted', 't', v_id, 'p', v_postings);
END $$;

-- The fast path for a batch: independent transfers applied set-wise, a handful of statements for
-- the whole batch instead of several per transfer. p_bulk lists the ops (1-based) that qualify (see
-- ledger_apply): plain transfers with a key unique in the batch, each debiting only non-negative
-- accounts that no other op of the batch touches, so every funds check is independent of the others
-- and exact. Returns {index: result}.
CREATE FUNCTION ledger_apply_bulk(p_ops jsonb, p_bulk int[]) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_results jsonb;
    v_problems jsonb;
    v_ok int[];
    v_ids bigint[];
    v_done jsonb;
    v_i int;
    v_malformed bigint;
BEGIN
    -- Keys seen before: the same request replays, another conflicts.
    SELECT coalesce(jsonb_object_agg(o.i, CASE WHEN t.request_hash = o.op->>'hash'
               THEN jsonb_build_object('s', 'replayed', 't', t.id, 'p', ledger_postings_of(t.id))
               ELSE jsonb_build_object('s', 'conflict', 't', t.id) END), '{}')
      INTO v_results
      FROM jsonb_array_elements(p_ops) WITH ORDINALITY AS o(op, i)
      JOIN transfers t ON t.idempotency_key = o.op->>'key'
     WHERE o.i = ANY(p_bulk);

    -- Data problems (unknown account, wrong currency, insufficient funds: the first per op), and in
    -- the same pass the structural backstop, which Python checked already: a malformed op fails
    -- the whole batch.
    WITH legs AS (
        SELECT o.i, (x->>'a')::bigint AS a, (x->>'m')::bigint AS m, x->>'c' AS c
          FROM jsonb_array_elements(p_ops) WITH ORDINALITY AS o(op, i), jsonb_array_elements(o.op->'legs') x
         WHERE o.i = ANY(p_bulk) AND NOT v_results ? o.i::text
    ), malformed AS (
        SELECT i FROM legs GROUP BY i HAVING count(*) < 2 OR bool_or(m = 0)
        UNION ALL
        SELECT i FROM legs GROUP BY i, c HAVING sum(m) <> 0
    ), per AS (
        SELECT i, a, c, sum(m) AS net FROM legs GROUP BY i, a, c
    ), problem AS (
        SELECT DISTINCT ON (per.i) per.i,
               CASE WHEN acc.id IS NULL THEN jsonb_build_object('s', 'unknown_account', 'account', per.a)
                    WHEN acc.currency <> per.c THEN jsonb_build_object('s', 'currency_mismatch', 'account', per.a,
                                                                       'expected', acc.currency, 'got', per.c)
                    ELSE jsonb_build_object('s', 'insufficient_funds', 'account', per.a,
                                            'available', acc.balance - acc.held, 'needed', -per.net) END AS r
          FROM per LEFT JOIN accounts acc ON acc.id = per.a
         WHERE acc.id IS NULL OR acc.currency <> per.c
            OR (NOT acc.may_go_negative AND acc.balance - acc.held + per.net < 0)
         ORDER BY per.i, per.a
    )
    SELECT (SELECT count(*) FROM malformed), (SELECT coalesce(jsonb_object_agg(i, r), '{}') FROM problem)
      INTO v_malformed, v_problems;
    IF v_malformed > 0 THEN
        RAISE EXCEPTION 'ledger: malformed transfer in batch' USING ERRCODE = 'check_violation';
    END IF;
    v_results := v_results || v_problems;

    -- The transfers that go ahead. A key committed concurrently since the look-up above makes
    -- ON CONFLICT skip its op, which then takes the careful path below.
    WITH o AS (
        SELECT i, op FROM jsonb_array_elements(p_ops) WITH ORDINALITY AS t(op, i)
         WHERE i = ANY(p_bulk) AND NOT v_results ? i::text
    ), ins AS (
        INSERT INTO transfers (idempotency_key, request_hash, kind, reference, metadata)
        SELECT op->>'key', op->>'hash', op->>'kind', op->>'ref', coalesce(op->'meta', '{}') FROM o ORDER BY i
        ON CONFLICT DO NOTHING
        RETURNING id, idempotency_key
    )
    SELECT array_agg(o.i ORDER BY o.i), array_agg(ins.id ORDER BY o.i) INTO v_ok, v_ids
      FROM o JOIN ins ON ins.idempotency_key = o.op->>'key';

    FOREACH v_i IN ARRAY p_bulk LOOP
        IF NOT v_results ? v_i::text AND NOT v_i = ANY(coalesce(v_ok, '{}')) THEN
            v_results := v_results || jsonb_build_object(v_i::text, coalesce(
                ledger_replay(p_ops->(v_i - 1)->>'key', p_ops->(v_i - 1)->>'hash'),
                jsonb_build_object('s', 'conflict', 't', NULL)));
        END IF;
    END LOOP;
    IF v_ok IS NULL THEN
        RETURN v_results;
    END IF;

    -- Postings and balances, in one statement. Every sub-statement sees the balances from before
    -- the UPDATE, so balance_after is the old balance plus the running sum of the account's legs
    -- in (op, leg) order, which is also the order the posting ids are assigned in.
    WITH t AS (
        SELECT i, tid FROM unnest(v_ok, v_ids) AS u(i, tid)
    ), legs AS (
        SELECT t.i, t.tid, l.n, (l.x->>'a')::bigint AS a, (l.x->>'m')::bigint AS m, l.x->>'c' AS c
          FROM t, jsonb_array_elements(p_ops->(t.i - 1)->'legs') WITH ORDINALITY AS l(x, n)
    ), ins AS (
        INSERT INTO postings (transfer_id, account_id, amount, currency, balance_after)
        SELECT legs.tid, legs.a, legs.m, legs.c,
               acc.balance + sum(legs.m) OVER (PARTITION BY legs.a ORDER BY legs.i, legs.n)
          FROM legs JOIN accounts acc ON acc.id = legs.a
         ORDER BY legs.i, legs.n
        RETURNING id, transfer_id, account_id, amount, balance_after
    ), upd AS (
        UPDATE accounts acc SET balance = acc.balance + d.net
          FROM (SELECT a, sum(m) AS net FROM legs GROUP BY a) d
         WHERE acc.id = d.a
        RETURNING acc.id
    ), per_transfer AS (
        SELECT transfer_id, jsonb_agg(jsonb_build_array(account_id, amount, balance_after) ORDER BY id) AS p
          FROM ins GROUP BY transfer_id
    )
    SELECT jsonb_object_agg(t.i, jsonb_build_object('s', 'ok', 't', t.tid, 'p', pt.p)) INTO v_done
      FROM t JOIN per_transfer pt ON pt.transfer_id = t.tid
     WHERE (SELECT count(*) FROM upd) >= 0;  -- reference upd so its row count is part of the plan
    RETURN v_results || v_done;
END $$;

-- IMPORTANT for speed: the planner guesses 100 rows for every jsonb_array_elements(), so it would
-- hash-join a batch's handful of legs against a full scan of accounts (milliseconds on 10,000
-- wallets). With hash and merge joins off inside the ledger, every account is found by its index.
CREATE FUNCTION ledger_apply(p_ops jsonb) RETURNS jsonb LANGUAGE plpgsql
SET enable_hashjoin = off SET enable_mergejoin = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_holds bigint[];
    v_reversed bigint[];
    v_accounts bigint[];
    v_op jsonb;
    v_i bigint;
    v_bulk int[];
    v_bulk_results jsonb := '{}';
    v_sharded boolean;
    v_out jsonb[] := '{}';
BEGIN
    -- What the batch touches, in one pass: the holds it resolves, the transfers it reverses, the
    -- accounts of its legs, and whether any leg credits a sharded (hot) account.
    SELECT array_agg(DISTINCT (o->>'hold')::bigint) FILTER (WHERE o ? 'hold'),
           array_agg(DISTINCT (o->>'t')::bigint) FILTER (WHERE o->>'op' = 'reverse')
      INTO v_holds, v_reversed
      FROM jsonb_array_elements(p_ops) o;
    SELECT array_agg(l.a), coalesce(bool_or(acc.shards IS NOT NULL AND l.m > 0 AND NOT l.exact), false)
      INTO v_accounts, v_sharded
      FROM (SELECT (x->>'a')::bigint AS a, (x->>'m')::bigint AS m, x ? 'x' AS exact
              FROM jsonb_array_elements(p_ops) o, jsonb_array_elements(o->'legs') x WHERE o ? 'legs') l
      LEFT JOIN accounts acc ON acc.id = l.a;

    -- Credits to a sharded account go to one of its shards, chosen by this backend, so batches
    -- running on different connections update different rows (a leg marked "x", exact, is left
    -- alone: consolidation credits the parent itself). A shard list never changes once set, so
    -- reading it before taking locks is safe.
    IF v_sharded THEN
        SELECT jsonb_agg(CASE WHEN NOT o ? 'legs' THEN o ELSE jsonb_set(o, '{legs}', (
                   SELECT jsonb_agg(CASE WHEN (l->>'m')::bigint > 0 AND acc.shards IS NOT NULL AND NOT l ? 'x'
                                         THEN jsonb_set(l, '{a}', to_jsonb(
                                              acc.shards[1 + pg_backend_pid() % cardinality(acc.shards)]))
                                         ELSE l END ORDER BY n)
                     FROM jsonb_array_elements(o->'legs') WITH ORDINALITY AS x(l, n)
                     LEFT JOIN accounts acc ON acc.id = (l->>'a')::bigint)) END ORDER BY i)
          INTO p_ops
          FROM jsonb_array_elements(p_ops) WITH ORDINALITY AS y(o, i);
        SELECT array_agg((x->>'a')::bigint) INTO v_accounts
          FROM jsonb_array_elements(p_ops) o, jsonb_array_elements(o->'legs') x WHERE o ? 'legs';
    END IF;

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

    -- Which ops can take the set-wise fast path (see ledger_apply_bulk).
    IF jsonb_array_length(p_ops) > 1 THEN
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

DROP = """
DROP FUNCTION IF EXISTS ledger_apply(jsonb), ledger_apply_bulk(jsonb, int[]), ledger_resolve_hold(jsonb),
    ledger_hold(jsonb), ledger_reverse(jsonb), ledger_transfer(jsonb, jsonb, bigint), ledger_replay(text, text),
    ledger_postings_of(bigint), ledger_write_postings(bigint, jsonb, boolean),
    ledger_legs_problem(jsonb, boolean), ledger_assert_well_formed(jsonb);
DROP TABLE IF EXISTS holds, postings, transfers, accounts, audit_log, user_locks, users;
DROP FUNCTION IF EXISTS ledger_refuse_change();
"""


def upgrade() -> None:
    run_script(TABLES)
    run_script(FUNCTIONS)


def downgrade() -> None:
    run_script(DROP)
