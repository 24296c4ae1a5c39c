"""Settings: `config.yml` (every key documented there, with its default) loaded into a typed,
validated object, with environment variables on top.

Environment overrides: ``DATABASE_URL``, ``REDIS_URL``, ``SAUTI_PIN_PEPPER``, ``SAUTI_API_KEY_PEPPER``, and any key as
``SAUTI__SECTION__KEY`` (``SAUTI__SERVER__PORT=9000``), a map's entry too
(``SAUTI__PAYMENTS__LIMITS__PER_TRANSACTION_MAX__KES=5000``): text as written, numbers and booleans as
the model reads them, lists and maps as YAML (`_place`, `_env_value`). An invalid setting stops
start-up with a message that names the key and the problem (never a secret's value).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from nlu.settings import NluSettings
from nlu.speech_settings import SpeechSettings
from payments.worker import TIMEOUT_SHARE_OF_LEASE


class ConfigError(Exception):
    """A configuration that cannot start Sauti; the message names each bad key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _CredentialSection(_Section):
    # Shortcodes, usernames and keys written unquoted in YAML (or given through the environment)
    # arrive as numbers: take them as the text they are.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    shutdown_timeout_s: float = Field(10.0, gt=0, le=300)
    # Gateway processes sharing the port (`gateway.serve_processes`): one event loop uses one core.
    # Above 1, sessions must be in Redis (redis.url).
    workers: int = Field(1, ge=1, le=64)


class DatabaseSettings(_Section):
    url: str | None = None
    embedded_dir: Path = Path("var/pg")
    embedded_database: str = Field("sauti", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # Connections kept open per process; size it to the connections busy at peak (a hop holds one
    # while its statements run). `max_overflow` more open under a burst, each closed after one use.
    pool_size: int = Field(40, ge=1, le=200)
    max_overflow: int = Field(10, ge=0, le=200)
    migrate_on_start: bool = True
    ready_timeout_s: float = Field(2.0, gt=0, le=60)


class RedisSettings(_Section):
    url: str | None = None


UssdLanguage = Literal["en", "sw", "fr", "wo"]


class VoiceSettings(_Section):
    """The voice channel (`gateway.voice_api`, `gateway.voice_call`, `dialogs.voice_commands`)."""

    # A spoken command waits this long for its PIN (or an answer to a question) before it expires.
    command_ttl_s: float = Field(300.0, ge=30, le=3600)
    # Where Africa's Talking reaches this gateway (prompt audio and callback URLs in the call's XML);
    # None: the URL the callback itself came to (right behind no proxy, or one that keeps Host).
    public_base_url: str | None = Field(None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    # Rendered Swahili and French prompts (AT's Say speaks English only).
    prompt_cache_dir: Path = Path("var/cache/voice-prompts")
    # Longest recording a caller may make for one command.
    max_record_s: int = Field(20, ge=3, le=120)
    # Seconds to wait for the PIN's digits on a call.
    pin_timeout_s: int = Field(20, ge=5, le=120)
    # Hosts a recordingUrl may point to (a suffix matches subdomains): anything else is refused,
    # so a forged callback cannot make the gateway fetch arbitrary URLs.
    recording_hosts: tuple[str, ...] = ("africastalking.com",)
    # Largest recording or upload accepted, in bytes, and how long fetching a recording may take.
    max_audio_bytes: int = Field(5 * 1024 * 1024, ge=10_000, le=100 * 1024 * 1024)
    fetch_timeout_s: float = Field(10.0, gt=0, le=120)
    # Prefix of the pending commands' keys in Redis (when redis.url is set).
    redis_key_prefix: str = Field("sauti:voice:", min_length=1, max_length=100)


class UssdSettings(_Section):
    """The USSD channel (`gateway.ussd`, `dialogs/`): Africa's Talking's callback and its sessions."""

    # The code callers dial; extensions of it (*384*1*2#) pre-select a path.
    service_code: str = Field("*384*1#", pattern=r"^\*[0-9]+(\*[0-9]+)*#$")
    # How long a session's state is kept after its last hop (AT ends a session after 180 s).
    session_ttl_s: float = Field(300.0, ge=30, le=24 * 3600)
    # A session dropped mid-journey can be resumed by redialling within this long.
    resume_window_s: float = Field(180.0, ge=0, le=24 * 3600)
    default_language: UssdLanguage = "en"
    # Language of new numbers by country (ISO code); other countries get default_language.
    country_languages: dict[str, UssdLanguage] = Field(default_factory=lambda: {"SN": "fr", "CI": "fr"})
    # Prefix of the session keys in Redis (several deployments can share one Redis).
    redis_key_prefix: str = Field("sauti:ussd:", min_length=1, max_length=100)
    # Connections to Redis per process; commands are pipelined on each (one carries thousands of hops a second).
    redis_connections: int = Field(1, ge=1, le=64)

    @field_validator("country_languages", mode="before")
    @classmethod
    def _country_codes(cls, languages: Any) -> Any:
        # Callers' countries are looked up as libphonenumber names them (KE, SN): a code written in
        # lower case (`ke: sw`, SAUTI__USSD__COUNTRY_LANGUAGES__ke) would never match.
        if not isinstance(languages, Mapping):
            return languages
        codes = {}
        for code, language in languages.items():
            if not (isinstance(code, str) and re.fullmatch(r"[A-Za-z]{2}", code)):
                raise ValueError(f"{code!r} is not a country code (ISO 3166, two letters: KE, SN)")
            codes[code.upper()] = language
        return codes

    @model_validator(mode="after")
    def _resume_within_ttl(self) -> UssdSettings:
        if self.resume_window_s > self.session_ttl_s:
            raise ValueError(f"resume_window_s ({self.resume_window_s:g}) cannot exceed session_ttl_s "
                             f"({self.session_ttl_s:g}): the session would be gone before the window closes")
        return self


class SecuritySettings(_Section):
    pin_length: int = Field(4, ge=4, le=8)
    pin_max_attempts: int = Field(3, ge=1, le=20)
    pin_lock_minutes: int = Field(15, ge=1, le=7 * 24 * 60)
    argon2_time_cost: int = Field(2, ge=1, le=10)
    argon2_memory_kib: int = Field(19_456, ge=8_192, le=1_048_576)
    argon2_parallelism: int = Field(1, ge=1, le=16)
    # Threads hashing PINs; 0: every core but one (at least one), which keeps a core for the event loop.
    pin_hash_threads: int = Field(0, ge=0, le=256)
    pin_pepper: SecretStr = SecretStr("")
    # The key of PIN check values (`payments.identities`): a PIN is then checked with one HMAC, not an
    # argon2 verify. None: generated once into pin_check_key_file; both None: argon2 for every check.
    pin_check_key: SecretStr | None = None
    pin_check_key_file: Path | None = Path("var/secrets/pin-check-key")
    # Failed device sign-ins (`gateway.sign_in_limits`) one client may make in a window before it
    # must wait for the window's end: the lock-out stops guessing at one wallet, this across many.
    sign_in_failures_per_client: int = Field(10, ge=1, le=10_000)
    sign_in_window_minutes: int = Field(15, ge=1, le=24 * 60)
    # Addresses of the reverse proxies in front of the gateway, whose X-Forwarded-For is believed.
    trusted_proxies: list[str] = Field(default_factory=list)

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, proxies: list[str]) -> list[str]:
        for proxy in proxies:
            try:
                ipaddress.ip_address(proxy)
            except ValueError:
                raise ValueError(f"{proxy!r} is not an IP address") from None
        return proxies

    @field_validator("pin_check_key")
    @classmethod
    def _long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        # A short key could be guessed, and with it every PIN from the database in 10,000 tries.
        if key is not None and len(key.get_secret_value()) < 32:
            raise ValueError("pin_check_key needs at least 32 characters (e.g. python -c "
                             "'import secrets; print(secrets.token_urlsafe(32))')")
        return key


class LedgerSettings(_Section):
    max_transaction: int = Field(999_999, ge=1, le=10**9, description="major units, any currency")
    batch_max_size: int = Field(64, ge=1, le=1000)
    batch_pipelines: int = Field(1, ge=1, le=32)
    # Shards of each hot account (fee revenue, provider collection and settlement), made when the
    # payment orchestrator first uses it; 1: none.
    hot_account_shards: int = Field(8, ge=1, le=64)


class OutboxSettings(_Section):
    # Jobs at once per worker (each mostly waits on a provider): 4 fell behind at a hundred sends a second.
    concurrency: int = Field(32, ge=1, le=256)
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


class SpeechSection(_Section):
    """The `speech:` section (speech to text for the voice channel); `speech_settings()` hands it to
    `nlu.speech` (same names, documented in `nlu.speech_settings.SpeechSettings`)."""

    backend: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    # A model from nlu.whisper_models.CATALOGUE, shipped in a PyPI package (nothing is downloaded).
    model: Literal["base", "tiny.en"] = "base"
    compute_type: Literal["int8", "int8_float32", "int16", "float32"] = "int8"
    # Threads per worker; 0: the machine's cores shared among the workers.
    cpu_threads: int = Field(0, ge=0, le=256)
    # Clips transcribed at once (each worker one thread), and clips queued behind them before a
    # caller is told to try again.
    workers: int = Field(1, ge=1, le=64)
    max_waiting: int = Field(8, ge=0, le=10_000)
    max_audio_s: float = Field(30.0, ge=1, le=600)
    biasing: bool = True
    beam_size: int = Field(5, ge=1, le=16)
    # Languages (as Whisper decodes them: Wolof as French) in which numbers are written as words.
    numbers_in_words: list[Literal["en", "sw", "fr"]] = Field(default_factory=lambda: ["en"])
    model_cache_dir: Path = Path("var/models")
    preload: bool = False

    def speech_settings(self) -> SpeechSettings:
        return SpeechSettings(**self.model_dump())


class ApiSettings(_Section):
    """The JSON payments API (`gateway.payments_api`) and its keys (`payments.api_keys`)."""

    key_pepper: SecretStr = SecretStr("")
    max_body_bytes: int = Field(65_536, ge=1_024, le=2 * 1024 * 1024)
    history_max_limit: int = Field(100, ge=1, le=1000)


class WebhooksSettings(_Section):
    """Webhooks to the API's callers (`payments.webhook_endpoints`, `payments.webhook_delivery`)."""

    # True accepts http:// and local addresses (tests, a demo on one machine); never in production,
    # where a caller could otherwise point our worker at our own network.
    allow_local_urls: bool = False
    timeout_s: float = Field(10.0, gt=0, le=60)
    max_endpoints_per_key: int = Field(5, ge=1, le=100)
    # Deliveries at once per process, by an outbox worker of their own (never in the slots of payouts).
    concurrency: int = Field(8, ge=1, le=256)


class OpsSettings(_Section):
    """The operator dashboard (`gateway.ops_dashboard`; the operator API needs no settings)."""

    # How long a sign-in lasts; signing out, or revoking the operator key, ends it sooner.
    session_ttl_s: int = Field(8 * 3600, ge=300, le=7 * 24 * 3600)


class AgentsSection(_Section):
    """Agents' cash-in and cash-out (`payments.agents.AgentSettings`, same names)."""

    # Commission on a cash-in, in basis points of the amount (200 = 2 %, as the seeds' hosts earn).
    cash_in_commission_bp: int = Field(200, ge=0, le=10_000)
    # Commission on a cash-out; keep it below the customer's fee (basic plan: 100) or cash-outs cost Sauti.
    cash_out_commission_bp: int = Field(50, ge=0, le=10_000)
    # How long a customer's cash-in / cash-out request waits for the agent (a cash-out's hold with it).
    request_expiry_s: float = Field(1800.0, ge=60, le=7 * 24 * 3600)
    # Requests one customer may have waiting at once (all agents together).
    max_pending_per_customer: int = Field(3, ge=1, le=100)
    # Digits of the agent numbers Sauti makes up when registering an agent without one.
    agent_number_digits: int = Field(6, ge=4, le=10)
    # How often `sauti serve` closes requests past their expiry (releasing cash-outs' held money).
    sweep_interval_s: float = Field(60.0, ge=1, le=3600)


class FeePlanSection(_Section):
    basis_points: int = Field(ge=0, le=10_000, description="100 = 1 %")
    monthly_allowance: int | None = Field(None, ge=0, description="payments a month; null = unlimited")


_DEFAULT_FEE_PLANS = {
    "free": FeePlanSection(basis_points=200, monthly_allowance=5),
    "basic": FeePlanSection(basis_points=100, monthly_allowance=50),
    "pro": FeePlanSection(basis_points=50, monthly_allowance=None),
    "business": FeePlanSection(basis_points=30, monthly_allowance=None),
}

CurrencyCode = Literal["KES", "XOF"]


class LimitsSection(_Section):
    """Major units per currency: one payment at most, and a day's total by KYC tier."""

    per_transaction_max: dict[CurrencyCode, int] = Field(
        default_factory=lambda: {"KES": 999_999, "XOF": 999_999})
    daily_by_tier: dict[int, dict[CurrencyCode, int]] = Field(default_factory=lambda: {
        0: {"KES": 70_000, "XOF": 200_000},
        1: {"KES": 300_000, "XOF": 1_000_000},
        2: {"KES": 1_000_000, "XOF": 5_000_000},
        3: {"KES": 5_000_000, "XOF": 20_000_000},
    })

    @model_validator(mode="after")
    def _positive(self) -> LimitsSection:
        caps = [*self.per_transaction_max.values(), *(v for tier in self.daily_by_tier.values() for v in tier.values())]
        if any(cap < 1 for cap in caps):
            raise ValueError("every limit must be at least 1")
        if not self.daily_by_tier:
            raise ValueError("daily_by_tier needs at least one KYC tier")
        return self


class PaymentsSection(_CredentialSection):
    """The payment orchestrator (`payments.orchestrator.Payments`) and where providers reach us."""

    # Our public URL as the providers reach it (https://pay.example.com); callbacks go to
    # <this>/callbacks/... . None: http://server.host:server.port (sandboxes on this machine).
    callback_base_url: str | None = Field(None, pattern=r"^https?://[^/\s]+(/[^\s]*)?$")
    # The secret path segment of Daraja's callback URLs (Daraja signs nothing). None: generated once
    # and kept in callback_secret_file (so serve and worker processes on this machine agree).
    callback_secret: SecretStr | None = None
    callback_secret_file: Path = Path("var/secrets/daraja-callback-secret")
    # While the callback secret is being changed, the one before: Daraja still calls back, under it,
    # about requests made before the change (gateway.callbacks). None otherwise.
    callback_previous_secret: SecretStr | None = None
    confirm_stk_with_query: bool = True
    default_plan: str = "basic"
    fee_plans: dict[str, FeePlanSection] = Field(default_factory=lambda: dict(_DEFAULT_FEE_PLANS))
    limits: LimitsSection = LimitsSection()
    sms_receipts: bool = True
    stk_account_reference: str = Field("Sauti", min_length=1, max_length=12)
    stk_description: str = Field("Sauti deposit", min_length=1, max_length=13)
    b2c_remarks: str = Field("Sauti payout", min_length=1, max_length=100)
    wave_success_url: str = "https://sauti.example/wave/success"
    wave_error_url: str = "https://sauti.example/wave/error"
    # Recovery (`Payments.recover_stuck`): at start-up, then every recovery_interval_s, payments open
    # longer than stuck_after_s are resolved by asking the providers.
    stuck_after_s: float = Field(300.0, ge=0, le=30 * 24 * 3600)
    recovery_interval_s: float = Field(60.0, gt=0, le=24 * 3600)
    recovery_batch: int = Field(200, ge=1, le=10_000)
    # Register the C2B validation and confirmation URLs with Daraja when serve starts (live mode;
    # sandbox mode always does). Otherwise: `sauti mpesa register-c2b`, once per URL change.
    register_c2b_on_start: bool = False
    # Contacts a user keeps (`payments.contacts`): adding one more through the app API is refused
    # (422); a send to a new number past it is paid but adds no contact.
    max_contacts_per_user: int = Field(500, ge=1, le=10_000)
    # Payment intents (`payments.intents`): how long one waits for its customer when its merchant does
    # not say (60 s to a week), how many one customer may have open (more are refused, 422), and how
    # often `sauti serve` closes the expired (paying one past its expiry closes it too).
    intent_expiry_s: float = Field(900.0, ge=60, le=7 * 24 * 3600)
    max_pending_intents: int = Field(10, ge=1, le=1000)
    # ... and how many of those one merchant may hold, so that one cannot take them all (422 too).
    max_pending_intents_per_merchant: int = Field(3, ge=1, le=1000)
    max_intents_per_day: int = Field(20, ge=1, le=10_000)
    intent_sweep_interval_s: float = Field(30.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _secret_and_plan(self) -> PaymentsSection:
        secret = self.callback_secret.get_secret_value() if self.callback_secret else None
        previous = self.callback_previous_secret.get_secret_value() if self.callback_previous_secret else None
        for name, value in (("callback_secret", secret), ("callback_previous_secret", previous)):
            if value is not None and not _CALLBACK_SECRET.fullmatch(value):
                raise ValueError(f"{name} must be 24 to 128 letters, digits, '-' or '_' (hard to guess, "
                                 "safe in a URL)")
        if previous is not None and previous == secret:
            raise ValueError("callback_previous_secret is the callback_secret itself: give the one before it, "
                             "or null")
        if self.default_plan not in self.fee_plans:
            raise ValueError(f"default_plan {self.default_plan!r} is not one of fee_plans "
                             f"({', '.join(sorted(self.fee_plans))})")
        return self


_CALLBACK_SECRET = re.compile(r"[A-Za-z0-9_-]{24,128}")


class MpesaSection(_CredentialSection):
    """Live M-Pesa Daraja credentials (`payments.providers.daraja.DarajaSettings`)."""

    base_url: str = "https://api.safaricom.co.ke"
    consumer_key: SecretStr | None = None
    consumer_secret: SecretStr | None = None
    shortcode: str | None = None
    passkey: SecretStr | None = None
    initiator_name: str | None = None
    # B2C's SecurityCredential: give it as generated on Safaricom's portal, or give the initiator
    # password and Safaricom's certificate (PEM file) to encrypt it with.
    security_credential: SecretStr | None = None
    initiator_password: SecretStr | None = None
    certificate_path: Path | None = None
    timeout_s: float = Field(30.0, gt=0, le=120)
    connect_timeout_s: float = Field(10.0, gt=0, le=60)

    @property
    def configured(self) -> bool:
        return self.consumer_key is not None

    def problems(self) -> list[str]:
        if not self.configured:
            return []
        needed = {"consumer_secret": self.consumer_secret, "shortcode": self.shortcode, "passkey": self.passkey,
                  "initiator_name": self.initiator_name}
        missing = [f"providers.mpesa.{name}" for name, value in needed.items() if not value]
        if self.security_credential is None and (self.initiator_password is None or self.certificate_path is None):
            missing.append("providers.mpesa.security_credential (or initiator_password with certificate_path)")
        return missing


class WaveSection(_CredentialSection):
    """Live Wave Business API credentials (`payments.providers.wave.WaveSettings`)."""

    base_url: str = "https://api.wave.com"
    api_key: SecretStr | None = None
    # Set when the API key has request signing enabled.
    signing_secret: SecretStr | None = None
    # How Wave secures webhooks to /callbacks/wave: "signing" (Wave-Signature) or "shared_secret" (Bearer).
    webhook_strategy: Literal["signing", "shared_secret"] = "signing"
    webhook_secret: SecretStr | None = None
    # While rotating the webhook secret, the old one (signing strategy only); None otherwise.
    webhook_previous_secret: SecretStr | None = None
    timeout_s: float = Field(30.0, gt=0, le=120)
    connect_timeout_s: float = Field(10.0, gt=0, le=60)

    @property
    def configured(self) -> bool:
        return self.api_key is not None

    def problems(self) -> list[str]:
        if self.configured and self.webhook_secret is None:
            return ["providers.wave.webhook_secret (webhooks cannot be verified without it)"]
        return []


class SmsSection(_CredentialSection):
    """Africa's Talking SMS (`payments.providers.sms.SmsSettings`)."""

    username: str | None = None
    api_key: SecretStr | None = None
    sender_id: str | None = None
    # None: Africa's Talking itself; a URL: that server instead.
    base_url: str | None = None
    connect_timeout_s: float = Field(5.0, gt=0, le=60)
    read_timeout_s: float = Field(15.0, gt=0, le=120)

    @property
    def configured(self) -> bool:
        return self.api_key is not None

    def problems(self) -> list[str]:
        return ["providers.sms.username"] if self.configured and not self.username else []


class SandboxSection(_Section):
    """The local provider sandboxes (`payments.sandbox`), used in sandbox mode."""

    # `sauti serve` starts them in-process; false: they run elsewhere (`sauti sandbox --port-base N`).
    run_in_serve: bool = True
    host: str = "127.0.0.1"
    # Daraja on this port, Wave on +1, Africa's Talking on +2. None: any free ports, known only to
    # `sauti serve` (then its in-process worker runs the provider jobs; `sauti worker` cannot).
    port_base: int | None = Field(None, ge=1, le=65533)
    callback_delay_s: float = Field(2.0, ge=0, le=600)


class ProvidersSection(_Section):
    # auto: live when any provider has credentials, else sandbox; sandbox; live.
    mode: Literal["auto", "sandbox", "live"] = "auto"
    mpesa: MpesaSection = MpesaSection()
    wave: WaveSection = WaveSection()
    sms: SmsSection = SmsSection()
    sandbox: SandboxSection = SandboxSection()

    @property
    def effective_mode(self) -> Literal["sandbox", "live"]:
        if self.mode != "auto":
            return self.mode
        return "live" if (self.mpesa.configured or self.wave.configured or self.sms.configured) else "sandbox"


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    access_log: bool = True


class Settings(_Section):
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    ussd: UssdSettings = UssdSettings()
    voice: VoiceSettings = VoiceSettings()
    security: SecuritySettings = SecuritySettings()
    ledger: LedgerSettings = LedgerSettings()
    outbox: OutboxSettings = OutboxSettings()
    nlu: NluSection = NluSection()
    speech: SpeechSection = SpeechSection()
    api: ApiSettings = ApiSettings()
    webhooks: WebhooksSettings = WebhooksSettings()
    ops: OpsSettings = OpsSettings()
    payments: PaymentsSection = PaymentsSection()
    agents: AgentsSection = AgentsSection()
    providers: ProvidersSection = ProvidersSection()
    logging: LoggingSettings = LoggingSettings()

    @model_validator(mode="after")
    def _payments_within_the_ledger(self) -> Settings:
        # The ledger refuses a leg above ledger.max_transaction (plus the largest fee): a payment the
        # quote allowed above it would be refused after the PIN.
        over = {code: cap for code, cap in self.payments.limits.per_transaction_max.items()
                if cap > self.ledger.max_transaction}
        if over:
            raise ValueError(f"payments.limits.per_transaction_max ({', '.join(f'{c}: {v}' for c, v in over.items())})"
                             f" is above ledger.max_transaction ({self.ledger.max_transaction}): the ledger would "
                             "refuse payments that the quote allows")
        return self

    @model_validator(mode="after")
    def _calls_fit_in_a_jobs_time(self) -> Settings:
        # A worker cuts a job short at a share of its lease (`payments.worker`): a webhook or provider
        # call still within the timeout we gave it would be failed, and tried again, though the other side
        # took it (a payout's answer lost). Each call's longest wait must end before the job's does.
        budget = self.outbox.lease_s * TIMEOUT_SHARE_OF_LEASE
        p = self.providers
        waits = {
            "webhooks.timeout_s": self.webhooks.timeout_s,
            # aiohttp's total timeout: connecting is within it.
            "providers.mpesa.timeout_s": p.mpesa.timeout_s,
            "providers.wave.timeout_s": p.wave.timeout_s,
            "providers.sms.connect_timeout_s + read_timeout_s": p.sms.connect_timeout_s + p.sms.read_timeout_s,
        }
        over = {name: wait for name, wait in waits.items() if wait >= budget}
        if over:
            needed = max(over.values()) / TIMEOUT_SHARE_OF_LEASE
            raise ValueError(
                f"outbox.lease_s ({self.outbox.lease_s:g}) is too short: a job is cut short at "
                f"{TIMEOUT_SHARE_OF_LEASE:.0%} of it ({budget:g} s), so a call answered in time could count as "
                "failed, and calls may wait longer: "
                + ", ".join(f"{name} ({wait:g} s)" for name, wait in over.items())
                + f". Make outbox.lease_s more than {needed:g}, or those timeouts shorter")
        return self

    @model_validator(mode="after")
    def _live_providers_complete(self) -> Settings:
        p = self.providers
        if p.effective_mode != "live":
            return self
        if not (p.mpesa.configured or p.wave.configured):
            return self._refuse(["providers.mpesa.consumer_key or providers.wave.api_key (mode is live)"])
        missing = [*p.mpesa.problems(), *p.wave.problems(), *p.sms.problems()]
        if p.mpesa.configured or p.wave.configured:
            # Real providers must reach us at a public URL; Daraja's URLs must carry a secret that
            # every process agrees on (a generated one would differ from machine to machine).
            if self.payments.callback_base_url is None:
                missing.append("payments.callback_base_url (live providers cannot reach server.host)")
        if p.mpesa.configured and self.payments.callback_secret is None:
            missing.append("payments.callback_secret")
        return self._refuse(missing)

    def _refuse(self, missing: list[str]) -> Settings:
        if missing:
            raise ValueError("live providers need: " + "; ".join(missing))
        return self


_DIRECT_ENV = {
    "DATABASE_URL": ("database", "url"),
    "REDIS_URL": ("redis", "url"),
    "SAUTI_PIN_PEPPER": ("security", "pin_pepper"),
    "SAUTI_PIN_CHECK_KEY": ("security", "pin_check_key"),
    "SAUTI_API_KEY_PEPPER": ("api", "key_pepper"),
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
            parts = tuple(p for p in name.removeprefix("SAUTI__").split("__") if p)
            if parts:
                node, key, kind = _place(tree, parts)
                node[key] = _env_value(kind, value)


def _place(tree: dict[str, Any], parts: tuple[str, ...]) -> tuple[dict[Any, Any], Any, Any]:
    """Where ``SAUTI__A__B__C`` goes in the settings tree: the mapping that holds it, its key there, and
    the type the models expect for it (None where they know no such setting: validation names it).

    Section and setting names are matched in lower case. A map's keys are kept as written, except that
    a key the map already has in another case (from the file, or the defaults) is that key, and so is
    one of the model's own choices (currency codes: ``…__KES``, ``…__kes``); an int key is an int.
    """
    node: dict[Any, Any] = tree
    kind: Any = Settings
    for index, part in enumerate(parts):
        shape, _ = _unwrap_optional(kind)
        default: Any = None
        if isinstance(shape, type) and issubclass(shape, BaseModel):
            key: Any = part.lower()
            field = shape.model_fields.get(key)
            kind = field.annotation if field is not None else None
            default = field.get_default(call_default_factory=True) if field is not None else None
        elif get_origin(shape) is dict:
            key_kind, kind = get_args(shape)
            key = _map_key(node, key_kind, part)
        else:
            key, kind = part, None
        if index == len(parts) - 1:
            return node, key, kind
        child = node.get(key)
        if not isinstance(child, dict):
            # A map the file leaves out starts as the model's default: setting one of its entries from the
            # environment changes that entry, as it would in the file, rather than replacing the map.
            child = node[key] = _plain(default) if isinstance(default, Mapping) else {}
        node = child
    raise AssertionError("unreachable: parts is never empty")


def _map_key(node: Mapping[Any, Any], key_kind: Any, part: str) -> Any:
    for existing in node:
        if str(existing) == part:
            return existing
    for existing in node:
        if isinstance(existing, str) and existing.casefold() == part.casefold():
            return existing
    shape, _ = _unwrap_optional(key_kind)
    if get_origin(shape) is Literal:
        for choice in get_args(shape):
            if isinstance(choice, str) and choice.casefold() == part.casefold():
                return choice
    if shape is int and re.fullmatch(r"[+-]?[0-9]+", part):
        return int(part)
    return part


def _plain(value: Any) -> Any:
    """A default as the file would hold it (plain mappings, a section as its values)."""
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _unwrap_optional(kind: Any) -> tuple[Any, bool]:
    """``X | None`` as (X, True); anything else as (itself, False)."""
    if get_origin(kind) in (Union, UnionType):
        args = get_args(kind)
        rest = tuple(a for a in args if a is not type(None))
        if len(rest) < len(args):
            return (rest[0] if len(rest) == 1 else Union[rest]), True  # noqa: UP007 (a runtime union)
    return kind, False


_TEXT = (str, SecretStr, Path)
_NULL_WORDS = frozenset({"null", "Null", "NULL", "~"})


def _env_value(kind: Any, value: str) -> Any:
    """What an environment variable's text means for a setting of type ``kind``.

    Text (strings, secrets, paths, choices) is taken as written, byte for byte: YAML would read
    ``*483*7#`` as an alias, cut ``s3cret #2024`` at its comment and ``01234567`` as an octal number.
    Numbers and true/false are left to the model, which reads them in decimal and nothing else. Only
    lists, maps and sections are read as YAML (``[10.0.0.1, 10.0.0.2]``, ``{KES: 5000}``); text that is
    not valid YAML is handed on as it is, for validation to refuse by the setting's name (the error
    never quotes a secret's value). An empty value, or ``null`` (``~``), sets an optional setting to
    null, as in the file; a setting that cannot be null takes ``null`` as text.
    """
    shape, optional = _unwrap_optional(kind)
    if optional and (value == "" or value.strip() in _NULL_WORDS):
        # As `key: null` in the file (SAUTI__SECURITY__PIN_CHECK_KEY_FILE=null: no check values).
        return None
    if _is_text(shape):
        return value
    if shape in (int, float, bool) or kind is None:
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def _is_text(shape: Any) -> bool:
    if isinstance(shape, type):
        return issubclass(shape, _TEXT)
    if get_origin(shape) is Literal:
        return all(isinstance(choice, str) for choice in get_args(shape))
    return False


_SECRET_KEY = re.compile(r"pepper|secret|key|password|passkey|credential|token", re.I)


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        problem = "unknown setting" if item["type"] == "extra_forbidden" else item["msg"]
        # Never echo a secret, nor a whole section (a cross-field check's input holds its secrets).
        hidden = (item["type"] == "extra_forbidden" or _SECRET_KEY.search(key)
                  or isinstance(item.get("input"), Mapping | list))
        shown = "" if hidden else f" (got {item.get('input')!r})"
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
