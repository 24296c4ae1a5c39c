"""Settings: the shipped config.yml is valid and documents every setting; the environment
overrides; a bad setting is named."""

from pathlib import Path

import pytest
import yaml

from gateway.settings import ConfigError, Settings, load_settings

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


def test_unreadable_config(tmp_path):
    broken = tmp_path / "config.yml"
    broken.write_text("server: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(broken, env={})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.yml", env={})
