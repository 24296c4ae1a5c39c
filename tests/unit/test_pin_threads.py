"""How many threads hash PINs: by default every core but one, so the event loop keeps a core."""

from __future__ import annotations

import pytest

from gateway.resources import pin_policy
from gateway.settings import Settings, load_settings
from payments import identities
from payments.identities import PinPolicy, PinService


@pytest.mark.parametrize(("cores", "threads"), [(None, 1), (1, 1), (2, 1), (8, 7)])
def test_every_core_but_one_hashes_by_default(monkeypatch: pytest.MonkeyPatch, cores: int | None,
                                               threads: int) -> None:
    monkeypatch.setattr(identities.os, "cpu_count", lambda: cores)
    assert PinPolicy().hash_threads_here() == threads


def test_a_set_thread_count_is_used_by_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identities.os, "cpu_count", lambda: 2)
    service = PinService(PinPolicy(hash_threads=3))
    try:
        assert service._threads._max_workers == 3
    finally:
        service.close()


def test_the_setting_reaches_the_policy(tmp_path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("security:\n  pin_hash_threads: 5\n  pin_check_key_file: null\n")
    assert pin_policy(load_settings(config, env={})).hash_threads == 5
    assert pin_policy(Settings.model_validate({"security": {"pin_check_key_file": None}})).hash_threads == 0
