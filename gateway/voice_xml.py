"""Africa's Talking Voice's XML actions (contract: ``../shared/contracts/africastalking.md``, Voice):
small functions that each return one element, and `response` that wraps them. Text and URLs are
escaped here, once, so a name or an amount can never break the document."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from aiohttp import web


def _attrs(**attrs: object) -> str:
    parts = []
    for name, value in attrs.items():
        if value is None:
            continue
        shown = ("true" if value else "false") if isinstance(value, bool) else str(value)
        parts.append(f" {name}={quoteattr(shown)}")
    return "".join(parts)


def say(text: str, *, voice: str = "woman") -> str:
    return f"<Say{_attrs(voice=voice)}>{escape(text)}</Say>"


def play(url: str) -> str:
    return f"<Play{_attrs(url=url)}/>"


def get_digits(prompt: str, *, num_digits: int | None, timeout: int, finish_on_key: str | None,
               callback_url: str) -> str:
    attrs = _attrs(numDigits=num_digits, timeout=timeout, finishOnKey=finish_on_key, callbackUrl=callback_url)
    return f"<GetDigits{attrs}>{prompt}</GetDigits>"


def record(prompt: str, *, max_length: int, timeout: int, callback_url: str, finish_on_key: str = "#") -> str:
    attrs = _attrs(finishOnKey=finish_on_key, maxLength=max_length, timeout=timeout, trimSilence=True,
                   playBeep=True, callbackUrl=callback_url)
    return f"<Record{attrs}>{prompt}</Record>"


def reject() -> str:
    return "<Reject/>"


def response(*actions: str) -> web.Response:
    body = '<?xml version="1.0" encoding="UTF-8"?><Response>' + "".join(actions) + "</Response>"
    return web.Response(text=body, content_type="application/xml", charset="utf-8")
