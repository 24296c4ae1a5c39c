"""Where the PIN check key comes from: the setting (or ``SAUTI_PIN_CHECK_KEY``), else a key generated
once into ``pin_check_key_file`` and shared by every process of the machine, else none (argon2 for
every check)."""

from __future__ import annotations

import logging
import stat

import pytest
from pydantic import SecretStr

from gateway.resources import pin_policy
from gateway.settings import ConfigError, Settings, load_settings


def test_a_key_is_generated_once_privately_and_read_back(tmp_path) -> None:
    path = tmp_path / "secrets" / "pin-check-key"
    settings = Settings.model_validate({"security": {"pin_check_key_file": str(path)}})
    key = pin_policy(settings).check_key
    assert len(key) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert pin_policy(settings).check_key == key  # the next start (or a worker) reads it back
    path.write_text("short\n")
    with pytest.raises(ConfigError, match="does not hold a PIN check key"):
        pin_policy(settings)


def test_a_configured_key_wins_and_none_means_argon2_for_every_check(tmp_path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(f"security:\n  pin_check_key_file: {tmp_path / 'unused'}\n")
    key = "k" * 40
    assert pin_policy(load_settings(config, env={"SAUTI_PIN_CHECK_KEY": key})).check_key == key
    assert not (tmp_path / "unused").exists()
    assert pin_policy(Settings.model_validate({"security": {"pin_check_key_file": None}})).check_key == ""


def test_a_short_key_is_refused_with_how_to_make_one(tmp_path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("security:\n  pin_check_key: too-short\n")
    with pytest.raises(ConfigError, match="at least 32 characters") as refused:
        load_settings(config, env={})
    assert "too-short" not in str(refused.value)  # a secret never reaches an error message


def test_live_providers_with_a_generated_key_are_warned(tmp_path, caplog) -> None:
    live = Settings.model_validate({
        "payments": {"callback_base_url": "https://pay.example.com"},
        "providers": {"wave": {"api_key": "wave_sn_prod_x", "webhook_secret": "whs"}},
        "security": {"pin_check_key_file": str(tmp_path / "pin-check-key")}})
    with caplog.at_level(logging.WARNING, logger="gateway.resources"):
        assert pin_policy(live).check_key
    assert "SAUTI_PIN_CHECK_KEY" in caplog.text
    caplog.clear()
    configured = live.model_copy(update={"security": live.security.model_copy(
        update={"pin_check_key": SecretStr("k" * 40)})})
    with caplog.at_level(logging.WARNING, logger="gateway.resources"):
        assert pin_policy(configured).check_key == "k" * 40
    assert not caplog.text
