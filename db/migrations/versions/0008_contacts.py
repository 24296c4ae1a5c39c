"""Contacts: the people a user pays, saved by hand (the app API) or added by a successful send.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

- `contacts`: one row per (user, phone): a name and an optional nickname (what the user calls them:
  "Mama"), a favourite flag, and what the user has sent them: how many sends (``times_paid``), how
  much per currency, when last and by which payment (``last_payment_id``). The seeds' Ongea Pesa
  ``contacts`` table, less what Sauti has no use for (relationship, default amount).
  Money sent is kept in one column per currency, in minor units (``total_sent_kes``,
  ``total_sent_xof``): amounts of two currencies never add up, a jsonb map could not carry a CHECK
  per currency nor be incremented as an integer, and a table of totals would cost a join on every
  listing for at most two rows. Sauti's currencies are a closed set already checked everywhere;
  adding one is a migration in any case.
- IMPORTANT: the counters change only in the transaction that marks a send succeeded
  (`payments.contacts.record_send`), which happens once per payment; ``last_payment_id`` is a
  backstop that refuses to count the same payment twice in a row.
- The address book is read favourites first, then most paid: `contacts_address_book` serves it
  (a backward scan gives both in descending order).
"""

from db.migration_scripts import run_script

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UP = r"""
CREATE TABLE contacts (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users(id),
    name text NOT NULL CHECK (name ~ '\S' AND length(name) <= 60),
    nickname text CHECK (nickname ~ '\S' AND length(nickname) <= 30),
    phone varchar(16) NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    favourite boolean NOT NULL DEFAULT false,
    times_paid integer NOT NULL DEFAULT 0 CHECK (times_paid >= 0),
    total_sent_kes bigint NOT NULL DEFAULT 0 CHECK (total_sent_kes >= 0),
    total_sent_xof bigint NOT NULL DEFAULT 0 CHECK (total_sent_xof >= 0),
    last_payment_id bigint REFERENCES payments(id),
    last_paid_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT contacts_user_phone UNIQUE (user_id, phone),
    -- Paid at least once exactly when a last payment is known.
    CONSTRAINT contacts_paid_iff_last CHECK ((times_paid = 0) = (last_paid_at IS NULL)
                                             AND (last_paid_at IS NULL) = (last_payment_id IS NULL))
);
CREATE INDEX contacts_address_book ON contacts (user_id, favourite, times_paid);
"""

DOWN = """
DROP TABLE IF EXISTS contacts;
"""


def upgrade() -> None:
    run_script(UP)


def downgrade() -> None:
    run_script(DOWN)
