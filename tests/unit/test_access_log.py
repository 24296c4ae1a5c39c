"""The access log never shows a secret: callback secrets in paths, tokens and PINs in queries."""

from gateway.access_log import redact_path


def test_callback_secret_segment_is_redacted():
    assert redact_path("/callbacks/daraja/abc123secret/stk") == "/callbacks/daraja/***/stk"
    assert redact_path("/callbacks/wave/xyz") == "/callbacks/wave/***"


def test_sensitive_query_values_are_redacted():
    line = redact_path("/v1/payments", "pin=1234&token=t0k&page=2&api_key=k&text=1*2*1234")
    assert "1234" not in line and "t0k" not in line and "api_key=***" in line
    assert "page=2" in line


def test_plain_paths_are_unchanged():
    assert redact_path("/healthz") == "/healthz"
