"""The key of the hop whose wrong PIN was counted last, so that copies of one hop count once.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01

`users.last_pin_attempt`: a network that sends a USSD hop twice makes both copies run (only their
session saves are compare-and-set): a wrong PIN in it was counted twice, and one typo could lock the
account. `payments.identities.PinService.check` records the hop's key with each failure it counts
and counts none for a key already counted.
"""

from db.migration_scripts import run_script

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script("ALTER TABLE users ADD COLUMN IF NOT EXISTS last_pin_attempt text;")


def downgrade() -> None:
    run_script("ALTER TABLE users DROP COLUMN IF EXISTS last_pin_attempt;")
