"""Settings: the shipped config.yml is valid and documents every setting; the environment
overrides; a bad setting is named."""

from pathlib import Path

import pytest
import yaml

from gateway.resources import ledger_limits
from gateway.settings import ConfigError, Settings, load_settings
from payments.money import Currency

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_config_is_valid_and_equals_the_defaults():
    assert load_settings(ROOT / "config.yml", env={}) == Settings()


def test_shipped_config_lists_every_setting():
    shipped = yaml.safe_load((ROOT / "config.yml").read_text())
    for section, model in Settings.model_fields.items():
        assert section in shipped, f"config.yml lacks section {section}"
        for key in model.annotation.model_fields:
            assert key in shipped[section], f"config.yml lacks {section}.{key}"


def test_environment_overrides():
    settings = load_settings(ROOT / "config.yml", env={
        "DATABASE_URL": "postgresql://u@db/sauti", "REDIS_URL": "redis://r:6379/0",
        "SAUTI__SERVER__PORT": "9000", "SAUTI__LOGGING__ACCESS_LOG": "false", "SAUTI_PIN_PEPPER": "s3cret"})
    assert settings.database.url == "postgresql://u@db/sauti"
    assert settings.redis.url == "redis://r:6379/0"
    assert settings.server.port == 9000 and settings.logging.access_log is False
    assert settings.security.pin_pepper.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_bad_settings_are_named(tmp_path):
    bad = tmp_path / "config.yml"
    bad.write_text("server:\n  port: 99999\nsecurity:\n  pin_max_attempts: 0\nledger:\n  batch_size: 3\n")
    with pytest.raises(ConfigError) as err:
        load_settings(bad, env={})
    message = str(err.value)
    assert "server.port" in message and "security.pin_max_attempts" in message
    assert "ledger.batch_size: unknown setting" in message


def test_the_ledgers_bound_is_derived_from_the_configured_fee_plans():
    settings = Settings.model_validate({"ledger": {"max_transaction": 1000},
                                        "payments": {"fee_plans": {"flat": {"basis_points": 500}},
                                                     "default_plan": "flat",
                                                     "limits": {"per_transaction_max": {"KES": 1000, "XOF": 1000}}}})
    assert ledger_limits(settings).max_minor[Currency.KES] == 1050 * 100
    assert ledger_limits(Settings()).max_minor[Currency.XOF] == 999_999 + 20_000  # the free plan's 2 %


def test_a_payment_limit_above_the_ledgers_is_refused(tmp_path):
    """The quote would allow what the ledger refuses after the PIN."""
    config = tmp_path / "config.yml"
    config.write_text("ledger:\n  max_transaction: 500000\n")
    with pytest.raises(ConfigError, match=r"per_transaction_max .*above ledger\.max_transaction"):
        load_settings(config, env={})


def test_unreadable_config(tmp_path):
    broken = tmp_path / "config.yml"
    broken.write_text("server: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(broken, env={})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.yml", env={})


def _from_env(env: dict[str, str], config: Path | None = ROOT / "config.yml") -> Settings:
    return load_settings(config, env=env)


@pytest.mark.parametrize(("variable", "value", "read"), [
    ("SAUTI__USSD__SERVICE_CODE", "*483*7#", lambda s: s.ussd.service_code),
    ("SAUTI__USSD__REDIS_KEY_PREFIX", "prod:ussd:", lambda s: s.ussd.redis_key_prefix),
    ("SAUTI__PROVIDERS__MPESA__INITIATOR_PASSWORD", "*Hunter2Secret",
     lambda s: s.providers.mpesa.initiator_password.get_secret_value()),
    ("SAUTI__PROVIDERS__MPESA__INITIATOR_PASSWORD", "01234567",
     lambda s: s.providers.mpesa.initiator_password.get_secret_value()),
    ("SAUTI__PROVIDERS__WAVE__WEBHOOK_SECRET", "wh-s3cret #2024",
     lambda s: s.providers.wave.webhook_secret.get_secret_value()),
    ("SAUTI__PROVIDERS__WAVE__WEBHOOK_SECRET", "%a!b@c: [d] {e} & f | g > h",
     lambda s: s.providers.wave.webhook_secret.get_secret_value()),
    ("SAUTI__PROVIDERS__WAVE__WEBHOOK_SECRET", "@secret", lambda s: s.providers.wave.webhook_secret.get_secret_value()),
    ("SAUTI__PROVIDERS__WAVE__WEBHOOK_SECRET", "!secret", lambda s: s.providers.wave.webhook_secret.get_secret_value()),
    ("SAUTI__PROVIDERS__MPESA__SHORTCODE", "0174379", lambda s: s.providers.mpesa.shortcode),
    ("SAUTI__SECURITY__PIN_PEPPER", "true", lambda s: s.security.pin_pepper.get_secret_value()),
    ("SAUTI__PAYMENTS__STK_DESCRIPTION", "null", lambda s: s.payments.stk_description),
])
def test_text_from_the_environment_is_taken_as_written(variable, value, read):
    """YAML read `*…` as an alias (a traceback quoting the password), cut ` #…` off as a comment and
    `01234567` as an octal number: text settings take the variable's value byte for byte."""
    assert read(_from_env({variable: value})) == value


def test_numbers_booleans_nulls_and_lists_from_the_environment():
    settings = _from_env({"SAUTI__SERVER__PORT": "09000", "SAUTI__LOGGING__ACCESS_LOG": "False",
                          "SAUTI__PROVIDERS__SANDBOX__PORT_BASE": "8700", "SAUTI__VOICE__PUBLIC_BASE_URL": "",
                          "SAUTI__PAYMENTS__FEE_PLANS__FREE__MONTHLY_ALLOWANCE": "null",
                          "SAUTI__SECURITY__TRUSTED_PROXIES": "[10.0.0.1, 10.0.0.2]",
                          "SAUTI__OUTBOX__BACKOFF_BASE_S": "2.5"})
    assert settings.server.port == 9000  # decimal, not octal
    assert settings.logging.access_log is False and settings.providers.sandbox.port_base == 8700
    assert settings.voice.public_base_url is None  # empty: an optional setting's null
    # ... and "null" for an optional path, as the benchmark turns check values off (argon2 each time).
    assert _from_env({"SAUTI__SECURITY__PIN_CHECK_KEY_FILE": "null"}).security.pin_check_key_file is None
    assert settings.payments.fee_plans["free"].monthly_allowance is None
    assert settings.security.trusted_proxies == ["10.0.0.1", "10.0.0.2"]
    assert settings.outbox.backoff_base_s == 2.5


def test_map_keys_from_the_environment(tmp_path):
    """Section and setting names are matched in lower case; a map's keys are not lower-cased (a
    currency, a country): KES was refused as 'kes', KE stored as 'ke' never matched."""
    for config in (ROOT / "config.yml", tmp_path / "no-such-file.yml"):
        env = {"SAUTI_CONFIG": str(config)}
        settings = load_settings(None, env={**env, "SAUTI__PAYMENTS__LIMITS__PER_TRANSACTION_MAX__KES": "5000",
                                            "SAUTI__PAYMENTS__LIMITS__DAILY_BY_TIER__0__KES": "1000",
                                            "SAUTI__USSD__COUNTRY_LANGUAGES__KE": "sw",
                                            "SAUTI__PAYMENTS__FEE_PLANS__BASIC__BASIS_POINTS": "80"})
        limits = settings.payments.limits
        # One entry changes; the rest of the map stays as the file (or the defaults) has it.
        assert limits.per_transaction_max == {"KES": 5000, "XOF": 999_999}, config
        assert limits.daily_by_tier[0] == {"KES": 1000, "XOF": 200_000} and limits.daily_by_tier[3]["KES"] == 5_000_000
        assert settings.ussd.country_languages == {"SN": "fr", "CI": "fr", "KE": "sw"}
        assert settings.payments.fee_plans["basic"].basis_points == 80
        assert settings.payments.fee_plans["basic"].monthly_allowance == 50 and set(settings.payments.fee_plans) == {
            "free", "basic", "pro", "business"}
        lower = load_settings(None, env={**env, "SAUTI__PAYMENTS__LIMITS__PER_TRANSACTION_MAX__kes": "4000",
                                         "SAUTI__USSD__COUNTRY_LANGUAGES__ke": "sw"})
        assert lower.payments.limits.per_transaction_max["KES"] == 4000
        assert lower.ussd.country_languages["KE"] == "sw"  # country codes are upper case, as callers' are looked up


def test_a_bad_value_from_the_environment_is_named_and_a_secret_never_shown():
    for env, key in (({"SAUTI__SECURITY__TRUSTED_PROXIES": "[10.0.0.1"}, "security.trusted_proxies"),
                     ({"SAUTI__SERVER__PORT": "0x50"}, "server.port"),
                     ({"SAUTI__USSD__COUNTRY_LANGUAGES__KEN": "sw"}, "ussd.country_languages"),
                     ({"SAUTI__PROVIDERS__MPESA__TIMEOUT_S": "*Hunter2Secret"}, "providers.mpesa.timeout_s")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            _from_env(env)
    with pytest.raises(ConfigError) as err:
        _from_env({"SAUTI__PAYMENTS__CALLBACK_SECRET": "*Hunter2 #Secret", "SAUTI__SECURITY__PIN_CHECK_KEY": "%short"})
    assert "callback_secret" in str(err.value) and "pin_check_key" in str(err.value)
    assert "Hunter2" not in str(err.value) and "short" not in str(err.value).replace("too short", "")


def test_an_outbox_lease_too_short_for_the_calls_a_job_waits_on_is_refused():
    """A job is cut at 80 % of its lease: a webhook answered within webhooks.timeout_s was failed."""
    with pytest.raises(ConfigError, match=r"outbox\.lease_s \(5\) is too short.*webhooks\.timeout_s \(10 s\)"):
        _from_env({"SAUTI__OUTBOX__LEASE_S": "5"})
    with pytest.raises(ConfigError, match=r"providers\.sms\.connect_timeout_s \+ read_timeout_s \(20 s\)"):
        _from_env({"SAUTI__OUTBOX__LEASE_S": "20", "SAUTI__PROVIDERS__MPESA__TIMEOUT_S": "10",
                   "SAUTI__PROVIDERS__WAVE__TIMEOUT_S": "10"})
    with pytest.raises(ConfigError, match=r"providers\.mpesa\.timeout_s \(50 s\)"):
        _from_env({"SAUTI__PROVIDERS__MPESA__TIMEOUT_S": "50"})  # the default lease (60 s) gives a job 48 s
    assert _from_env({"SAUTI__PROVIDERS__MPESA__TIMEOUT_S": "45"}).providers.mpesa.timeout_s == 45
    short = _from_env({"SAUTI__OUTBOX__LEASE_S": "5", "SAUTI__WEBHOOKS__TIMEOUT_S": "3",
                       "SAUTI__PROVIDERS__MPESA__TIMEOUT_S": "3", "SAUTI__PROVIDERS__WAVE__TIMEOUT_S": "3",
                       "SAUTI__PROVIDERS__MPESA__CONNECT_TIMEOUT_S": "1",
                       "SAUTI__PROVIDERS__WAVE__CONNECT_TIMEOUT_S": "1",
                       "SAUTI__PROVIDERS__SMS__CONNECT_TIMEOUT_S": "1", "SAUTI__PROVIDERS__SMS__READ_TIMEOUT_S": "2"})
    assert short.outbox.lease_s == 5
