"""PIN check values: a keyed hash of each user's PIN, so that checking a PIN costs microseconds.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

- `users.pin_check`: ``v1:<key id>:<HMAC-SHA256 hex>`` of the user's id and PIN under
  ``security.pin_check_key`` (a secret the database never holds), or NULL. It is derived from the
  PIN at the first argon2 verify that matches (and when a PIN is set), so existing users need no
  back-fill; a value made under another key (its key id differs) is ignored and derived again.
- IMPORTANT: whenever ``pin_hash`` changes, ``pin_check`` is set in the same statement (to the new
  PIN's value, or NULL): a stale check value would let the old PIN in. The trigger
  ``users_pin_check_follows_hash`` enforces it: an UPDATE that changes the hash and leaves the check
  value as it was clears it.
"""

from db.migration_scripts import run_script

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UP = r"""
ALTER TABLE users ADD COLUMN pin_check text CHECK (pin_check ~ '^v1:[0-9a-f]{8}:[0-9a-f]{64}$');
-- A check value without a PIN hash would be a PIN nobody can change or re-derive.
ALTER TABLE users ADD CONSTRAINT users_pin_check_needs_hash CHECK (pin_check IS NULL OR pin_hash IS NOT NULL);
-- A new hash with the old check value would let the old PIN in: an UPDATE that changes pin_hash and
-- leaves pin_check as it was clears it (the next check derives it from the new PIN).
CREATE FUNCTION users_pin_check_follows_hash() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.pin_hash IS DISTINCT FROM OLD.pin_hash AND NEW.pin_check IS NOT DISTINCT FROM OLD.pin_check THEN
        NEW.pin_check := NULL;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER users_pin_check_follows_hash BEFORE UPDATE OF pin_hash ON users
    FOR EACH ROW EXECUTE FUNCTION users_pin_check_follows_hash();
"""

DOWN = """
DROP TRIGGER IF EXISTS users_pin_check_follows_hash ON users;
DROP FUNCTION IF EXISTS users_pin_check_follows_hash();
ALTER TABLE users DROP COLUMN IF EXISTS pin_check;
"""


def upgrade() -> None:
    run_script(UP)


def downgrade() -> None:
    run_script(DOWN)
