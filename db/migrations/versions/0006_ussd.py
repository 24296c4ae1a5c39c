"""USSD sessions: how each ended, so operators can see where callers give up.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

- `ussd_sessions`: one row per USSD session that ended, written when our END screen closes it
  (``completed``) and by Africa's Talking's end-of-session event (``Success`` / ``Incomplete`` /
  ``Failed``), whichever comes first, the event completing the row. ``last_screen`` is our screen id
  the session ended on: for a dropped session, where the caller gave up. Never the input history
  (it holds PINs) nor the screens' text (names, balances).
"""

from db.migration_scripts import run_script

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UP = r"""
CREATE TABLE ussd_sessions (
    id bigserial PRIMARY KEY,
    session_id text NOT NULL UNIQUE CHECK (length(session_id) BETWEEN 1 AND 100),
    phone text NOT NULL,
    service_code text NOT NULL DEFAULT '',
    network_code text NOT NULL DEFAULT '',
    outcome text NOT NULL CHECK (outcome IN ('completed', 'dropped', 'failed')),
    -- Africa's Talking's own status (Success, Incomplete, Failed); null until its event arrives.
    at_status text,
    last_screen text,
    journey text,
    hops integer CHECK (hops >= 0),
    duration_ms bigint CHECK (duration_ms >= 0),
    error_message text,
    ended_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_ussd_sessions_ended_at ON ussd_sessions (ended_at);
"""

DOWN = """
DROP TABLE IF EXISTS ussd_sessions;
"""


def upgrade() -> None:
    run_script(UP)


def downgrade() -> None:
    run_script(DOWN)
