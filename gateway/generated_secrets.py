"""Secrets the gateway makes for itself when none is configured: 256 random bits written once to a
file (mode 0600) and read back by every later start, so that the `sauti serve` and `sauti worker`
processes of one machine agree on them. Production sets them instead (several machines must share
them); a generated one never reaches a log."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

SECRET_SHAPE = re.compile(r"[A-Za-z0-9_-]{24,128}")


class BadSecretFile(ValueError):
    """The file exists but does not hold a secret of the expected shape."""


def generated_secret(path: Path, what: str) -> str:
    """The secret kept in ``path``, made on first use (when several processes race, the first link
    wins and the others read it). ``what`` names it in the error for a file that holds no secret."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(fresh, path)  # atomic: never a half-written secret, never two different ones
        except FileExistsError:
            pass
        finally:
            fresh.unlink()
    secret = path.read_text(encoding="ascii").strip()
    if not SECRET_SHAPE.fullmatch(secret):
        raise BadSecretFile(f"{path} does not hold a {what} (24-128 of A-Z a-z 0-9 _ -); "
                            "delete it to generate a new one")
    return secret
