"""One log line per HTTP request (method, path, status, duration), with secrets redacted.

Secrets that can appear in a request line: callback URLs carry a secret path segment
(``/callbacks/<secret>/…``), and query strings may carry tokens, keys or PINs. Bodies are never
logged: Africa's Talking sends the whole USSD input history, PIN included, in ``text``.
"""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

log = logging.getLogger("sauti.access")

SENSITIVE_PARAMS = re.compile(r"(pin|secret|token|key|password|passkey|signature|credential|text)", re.I)
# Path segments that are secrets by position: the one right after these prefixes.
SECRET_SEGMENT_AFTER = ("/callbacks/daraja/", "/callbacks/wave/", "/callbacks/at/")
REDACTED = "***"
CALLBACKS = "/callbacks/"
NAMED_CALLBACKS = frozenset({"daraja", "wave", "at"})


def redact_path(path: str, query: str = "") -> str:
    for prefix in SECRET_SEGMENT_AFTER:
        if path.startswith(prefix):
            rest = path[len(prefix):]
            _, sep, tail = rest.partition("/")
            path = f"{prefix}{REDACTED}{sep}{tail}"
            break
    else:
        # Daraja's callbacks: /callbacks/<secret>/… (`gateway.callbacks`); only the Wave webhook
        # (/callbacks/wave, signed instead) has no secret there.
        head, sep, rest = path.removeprefix(CALLBACKS).partition("/")
        if path.startswith(CALLBACKS) and head and head not in NAMED_CALLBACKS:
            path = f"{CALLBACKS}{REDACTED}{sep}{rest}"
    if not query:
        return path
    pairs = [(k, REDACTED if SENSITIVE_PARAMS.search(k) else v) for k, v in parse_qsl(query, keep_blank_values=True)]
    return f"{path}?{urlencode(pairs, safe='*')}"


@web.middleware
async def access_log_middleware(request: web.Request, handler):
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.info("%s %s %d %.1fms", request.method, redact_path(request.path, request.query_string),
                 status, elapsed_ms)
