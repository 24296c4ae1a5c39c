"""The `payments:` and `providers:` settings: documented in config.yml to the last nested key, mapped
onto the orchestrator's policy, strict about what live providers need, and never echoing a secret;
and the Daraja callback secret, generated once per machine and shared by every process."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from gateway.access_log import redact_path
from gateway.payments_resources import ProvidersUnavailable, callback_secret, payment_settings, public_base_url
from gateway.settings import ConfigError, Settings, load_settings
from payments.errors import AmountOutOfRange
from payments.fees import DEFAULT_LIMITS, DEFAULT_PLANS, LimitExceeded
from payments.money import Currency, Money

ROOT = Path(__file__).resolve().parents[2]


def _keys(model: type[BaseModel], prefix: str) -> list[str]:
    keys = []
    for name, info in model.model_fields.items():
        keys.append(f"{prefix}{name}")
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            keys += _keys(info.annotation, f"{prefix}{name}.")
    return keys


def test_config_yml_documents_every_payments_and_providers_key():
    shipped = yaml.safe_load((ROOT / "config.yml").read_text())
    for section in ("payments", "providers"):
        for key in _keys(Settings.model_fields[section].annotation, f"{section}."):
            node = shipped
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"config.yml lacks {key}"
                node = node[part]


def test_without_credentials_auto_means_sandbox_and_any_credential_means_live():
    assert Settings().providers.effective_mode == "sandbox"
    live = Settings.model_validate({
        "payments": {"callback_base_url": "https://pay.example.com"},
        "providers": {"wave": {"api_key": "wave_sn_prod_x", "webhook_secret": "whs"}}})
    assert live.providers.effective_mode == "live"
    forced = Settings.model_validate({"providers": {"mode": "sandbox", "wave": {"api_key": "k"}}})
    assert forced.providers.effective_mode == "sandbox"


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(text)
    return path


def test_live_providers_name_every_missing_setting_and_never_echo_a_secret(tmp_path):
    path = _config(tmp_path, "providers:\n  mpesa:\n    consumer_key: ck-TOPSECRET-1\n"
                             "    consumer_secret: cs-TOPSECRET-2\n  wave:\n    api_key: wk-TOPSECRET-3\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    message = str(err.value)
    for missing in ("providers.mpesa.shortcode", "providers.mpesa.passkey", "providers.mpesa.initiator_name",
                    "providers.mpesa.security_credential", "providers.wave.webhook_secret",
                    "payments.callback_base_url", "payments.callback_secret"):
        assert missing in message
    assert "TOPSECRET" not in message


def test_a_mistyped_secret_is_named_but_not_shown(tmp_path):
    path = _config(tmp_path, "providers:\n  wave:\n    webhook_secret: [whs-TOPSECRET]\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert "providers.wave.webhook_secret" in str(err.value) and "TOPSECRET" not in str(err.value)


def test_a_guessable_callback_secret_or_an_unknown_plan_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="callback_secret must be 24 to 128"):
        load_settings(_config(tmp_path, "payments:\n  callback_secret: abc123\n"), env={})
    with pytest.raises(ConfigError, match="callback_previous_secret must be 24 to 128"):
        load_settings(_config(tmp_path, "payments:\n  callback_previous_secret: old\n"), env={})
    with pytest.raises(ConfigError, match="callback_previous_secret is the callback_secret itself"):
        load_settings(_config(tmp_path, "payments:\n  callback_secret: " + "s" * 30 + "\n"
                                        "  callback_previous_secret: " + "s" * 30 + "\n"), env={})
    with pytest.raises(ConfigError, match="default_plan 'gold' is not one of fee_plans"):
        load_settings(_config(tmp_path, "payments:\n  default_plan: gold\n"), env={})


def test_credentials_come_from_the_environment_as_text():
    settings = load_settings(ROOT / "config.yml", env={
        "SAUTI__PROVIDERS__MPESA__SHORTCODE": "174379", "SAUTI__PROVIDERS__MPESA__CONSUMER_KEY": "12345",
        "SAUTI__PROVIDERS__MODE": "sandbox"})
    assert settings.providers.mpesa.shortcode == "174379"
    assert settings.providers.mpesa.consumer_key is not None
    assert settings.providers.mpesa.consumer_key.get_secret_value() == "12345"
    assert "12345" not in repr(settings)


def test_the_payments_section_becomes_the_orchestrator_policy():
    settings = Settings.model_validate({"payments": {
        "default_plan": "flat", "fee_plans": {"flat": {"basis_points": 250}},
        "limits": {"per_transaction_max": {"KES": 100}, "daily_by_tier": {0: {"KES": 150}}},
        "confirm_stk_with_query": False, "stk_account_reference": "Shop"}})
    policy = payment_settings(settings.payments, "https://pay.example.com/callbacks/s")
    plan = policy.fee_plans[policy.default_plan]
    assert plan.fee_for(Money.of(1000, Currency.KES)) == Money.of(25, Currency.KES)
    assert plan.monthly_allowance is None
    assert policy.confirm_stk_with_query is False and policy.stk_account_reference == "Shop"
    with pytest.raises(AmountOutOfRange):
        policy.limits.check(Money.of(101, Currency.KES), kyc_tier=0, spent_today=Money.zero(Currency.KES))
    with pytest.raises(LimitExceeded):
        policy.limits.check(Money.of(60, Currency.KES), kyc_tier=0, spent_today=Money.of(100, Currency.KES))
    # The shipped defaults are the orchestrator's own defaults.
    shipped = payment_settings(Settings().payments, "x")
    assert dict(shipped.fee_plans) == dict(DEFAULT_PLANS)
    assert dict(shipped.limits.per_transaction_max) == dict(DEFAULT_LIMITS.per_transaction_max)
    assert {t: dict(c) for t, c in shipped.limits.daily_by_tier.items()} == \
        {t: dict(c) for t, c in DEFAULT_LIMITS.daily_by_tier.items()}


def test_providers_reach_us_at_the_configured_url_or_where_serve_listens():
    wildcard = Settings.model_validate({"server": {"host": "0.0.0.0", "port": 9000}})  # noqa: S104
    assert public_base_url(wildcard) == "http://127.0.0.1:9000"
    assert public_base_url(Settings.model_validate({"server": {"host": "::", "port": 9000}})) == "http://[::1]:9000"
    assert public_base_url(Settings.model_validate(
        {"payments": {"callback_base_url": "https://pay.example.com/sauti/"}})) == "https://pay.example.com/sauti"


def test_the_callback_secret_is_generated_once_privately_and_shared(tmp_path):
    settings = Settings.model_validate({"payments": {"callback_secret_file": str(tmp_path / "s" / "secret")}})
    # Several processes starting at once agree on one secret.
    with ThreadPoolExecutor(8) as pool:
        secrets = set(pool.map(lambda _: callback_secret(settings), range(16)))
    assert len(secrets) == 1
    (secret,) = secrets
    assert len(secret) >= 32
    path = tmp_path / "s" / "secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert callback_secret(settings) == secret  # the next start reads it back
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    assert redact_path(f"/callbacks/{secret}/stk") == "/callbacks/***/stk"

    path.write_text("short\n")
    with pytest.raises(ProvidersUnavailable, match="does not hold a callback secret"):
        callback_secret(settings)

    configured = Settings.model_validate({"payments": {"callback_secret": "c" * 30,
                                                       "callback_secret_file": str(tmp_path / "unused")}})
    assert callback_secret(configured) == "c" * 30
    assert not (tmp_path / "unused").exists()
