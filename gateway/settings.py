"""Settings: `config.yml` (every key documented there, with its default) loaded into a typed,
validated object, with environment variables on top.

Environment overrides: ``DATABASE_URL``, ``REDIS_URL``, ``SAUTI_PIN_PEPPER``, and any key as
``SAUTI__SECTION__KEY`` (``SAUTI__SERVER__PORT=9000``). An invalid setting stops start-up with a
message that names the key and the problem.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from nlu.settings import NluSettings


class ConfigError(Exception):
    """A configuration that cannot start Sauti; the message names each bad key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    shutdown_timeout_s: float = Field(10.0, gt=0, le=300)


class DatabaseSettings(_Section):
    url: str | None = None
    embedded_dir: Path = Path("var/pg")
    embedded_database: str = Field("sauti", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    pool_size: int = Field(10, ge=1, le=200)
    migrate_on_start: bool = True
    ready_timeout_s: float = Field(2.0, gt=0, le=60)


class RedisSettings(_Section):
    url: str | None = None


class SecuritySettings(_Section):
    pin_length: int = Field(4, ge=4, le=8)
    pin_max_attempts: int = Field(3, ge=1, le=20)
    pin_lock_minutes: int = Field(15, ge=1, le=7 * 24 * 60)
    argon2_time_cost: int = Field(2, ge=1, le=10)
    argon2_memory_kib: int = Field(19_456, ge=8_192, le=1_048_576)
    argon2_parallelism: int = Field(1, ge=1, le=16)
    pin_pepper: SecretStr = SecretStr("")


class LedgerSettings(_Section):
    max_transaction: int = Field(999_999, ge=1, le=10**9, description="major units, any currency")
    batch_max_size: int = Field(64, ge=1, le=1000)
    batch_pipelines: int = Field(1, ge=1, le=32)


class OutboxSettings(_Section):
    concurrency: int = Field(4, ge=1, le=256)
    poll_interval_s: float = Field(1.0, gt=0, le=60)
    lease_s: float = Field(60.0, ge=1, le=3600)
    max_attempts: int = Field(10, ge=1, le=1000)
    backoff_base_s: float = Field(2.0, gt=0, le=3600)
    backoff_max_s: float = Field(600.0, gt=0, le=7 * 24 * 3600)
    run_in_serve: bool = True

    @model_validator(mode="after")
    def _backoff_cap_above_base(self) -> OutboxSettings:
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError(f"backoff_max_s ({self.backoff_max_s:g}) must be at least "
                             f"backoff_base_s ({self.backoff_base_s:g})")
        return self


class NluSection(_Section):
    """The `nlu:` section; `nlu_settings()` hands it to the nlu package (which imports none of ours)."""

    backend: Literal["embedded", "rasa"] = "embedded"
    confidence_threshold: float = Field(0.4, ge=0.0, le=1.0)
    data_dir: Path | None = None
    cache_dir: Path | None = Path("var/cache/nlu")
    rasa_url: str = "http://localhost:5005"
    rasa_token: SecretStr | None = None
    rasa_timeout_s: float = Field(2.0, gt=0, le=60)

    def nlu_settings(self) -> NluSettings:
        values = self.model_dump()
        values["rasa_token"] = self.rasa_token.get_secret_value() if self.rasa_token else None
        return NluSettings(**values)


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    access_log: bool = True


class Settings(_Section):
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    security: SecuritySettings = SecuritySettings()
    ledger: LedgerSettings = LedgerSettings()
    outbox: OutboxSettings = OutboxSettings()
    nlu: NluSection = NluSection()
    logging: LoggingSettings = LoggingSettings()


_DIRECT_ENV = {
    "DATABASE_URL": ("database", "url"),
    "REDIS_URL": ("redis", "url"),
    "SAUTI_PIN_PEPPER": ("security", "pin_pepper"),
}


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value


def _env_overrides(tree: dict[str, Any], env: Mapping[str, str]) -> None:
    for name, path in _DIRECT_ENV.items():
        if env.get(name):
            _set(tree, path, env[name])
    for name, value in env.items():
        if name.startswith("SAUTI__"):
            path = tuple(p.lower() for p in name.removeprefix("SAUTI__").split("__") if p)
            if path:
                # YAML parsing turns "9000" into 9000 and "false" into False, as in the file.
                _set(tree, path, yaml.safe_load(value) if value else value)


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        problem = "unknown setting" if item["type"] == "extra_forbidden" else item["msg"]
        shown = "" if item["type"] == "extra_forbidden" or "pepper" in key else f" (got {item.get('input')!r})"
        lines.append(f"  {key}: {problem}{shown}")
    return "\n".join(lines)


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` (default: ``$SAUTI_CONFIG`` or ``./config.yml`` if present), apply the
    environment, validate. Raises `ConfigError` naming every bad key."""
    env = os.environ if env is None else env
    chosen = Path(path) if path else Path(env.get("SAUTI_CONFIG", "config.yml"))
    tree: dict[str, Any] = {}
    if chosen.exists():
        try:
            loaded = yaml.safe_load(chosen.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{chosen} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{chosen} must be a mapping of sections (server:, database:, …)")
        tree = loaded or {}
    elif path:
        raise ConfigError(f"config file {chosen} not found")
    _env_overrides(tree, env)
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(chosen) if chosen.exists() else "environment")) from None
