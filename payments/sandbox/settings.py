"""The sandbox's knobs: the credentials it accepts and how long its asynchronous steps take.

Defaults suit a person trying the gateway by hand (callbacks after two seconds, like the real
providers); `SandboxSettings.for_tests` shortens every delay so a test suite stays fast.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Safaricom's own public sandbox values: documented, not secrets.
DARAJA_TEST_SHORTCODE = "174379"
DARAJA_TEST_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"


@dataclass(frozen=True, slots=True)
class SandboxSettings:
    # -- Daraja --
    daraja_consumer_key: str = "sauti-sandbox-key"
    daraja_consumer_secret: str = field(default="sauti-sandbox-secret", repr=False)
    daraja_shortcode: str = DARAJA_TEST_SHORTCODE
    daraja_passkey: str = field(default=DARAJA_TEST_PASSKEY, repr=False)
    daraja_initiator_name: str = "testapi"
    daraja_initiator_password: str = field(default="Safaricom999!*!", repr=False)
    #: What OAuth announces as ``expires_in``; the token really lives one second longer, as on Daraja.
    daraja_token_ttl_s: float = 3599
    #: How far an STK ``Timestamp`` may be from Nairobi's clock: catches UTC-instead-of-EAT bugs.
    daraja_timestamp_tolerance_s: float = 900
    #: Opening balance of the utility account that pays B2C and B2B, in whole shillings.
    daraja_utility_balance_kes: int = 1_000_000
    # -- Wave --
    wave_api_key: str = field(default="wave_sn_prod_sauti_sandbox", repr=False)
    #: When set, every API request must carry a valid Wave-Signature made with this secret.
    wave_request_signing_secret: str | None = field(default=None, repr=False)
    #: Where webhooks go; None until set here or with ``POST /_sandbox/webhooks``.
    wave_webhook_url: str | None = None
    #: ``signing`` (Wave-Signature) or ``shared_secret`` (Authorization: Bearer).
    wave_webhook_strategy: str = "signing"
    #: Several secrets sign with one ``v1`` each, as during a rotation.
    wave_webhook_secrets: tuple[str, ...] = field(default=("wave_sn_WHS_sauti_sandbox",), repr=False)
    wave_business_name: str = "Sauti Sandbox"
    wave_opening_balance_xof: int = 10_000_000
    #: Wave's fee in basis points, rounded up to the franc (1 % by default).
    wave_fee_bps: int = 100
    wave_checkout_ttl_s: float = 30 * 60
    wave_payout_reversal_window_s: float = 3 * 24 * 3600
    wave_transactions_page_size: int = 50
    # -- Africa's Talking --
    at_username: str = "sandbox"
    at_api_key: str = field(default="atsk_sauti_sandbox", repr=False)
    # -- timing --
    #: Between accepting a request and POSTing its result (the payer typing the PIN).
    callback_delay_s: float = 2.0
    #: How long a "slow" answer takes.
    slow_answer_s: float = 10.0
    #: How long the sandbox waits for our callback endpoints to answer (results, confirmations, webhooks).
    callback_timeout_s: float = 5.0
    #: How long Daraja waits for our C2B validation answer before applying the registered
    #: ``ResponseType`` (the contract: "within ~8 s"). Its own knob, not ``callback_timeout_s``: a
    #: validation answered after 6 s is honoured by Daraja, so the sandbox must honour it too.
    daraja_c2b_validation_timeout_s: float = 8.0
    #: Wave webhook retries: the n-th retry waits base * 2**(n-1) seconds, at most max_attempts tries.
    webhook_retry_base_s: float = 1.0
    webhook_max_attempts: int = 8

    @classmethod
    def for_tests(cls, **overrides: Any) -> SandboxSettings:
        """Settings with every delay short, for test suites."""
        fast: dict[str, Any] = {
            "callback_delay_s": 0.05,
            "slow_answer_s": 1.0,
            "callback_timeout_s": 2.0,
            "webhook_retry_base_s": 0.05,
            "webhook_max_attempts": 5,
        }
        return cls(**{**fast, **overrides})

    def replace(self, **changes: Any) -> SandboxSettings:
        return dataclasses.replace(self, **changes)
