"""The session-start token buckets, without a server: refill arithmetic, both kinds, the memory bound."""

from __future__ import annotations

import pytest

from hushgate.server import admission
from hushgate.server.app import create_app
from hushgate.server.auth import Principal
from hushgate.server.session_rate import Buckets, SessionRate
from hushgate.server.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def test_a_burst_then_one_start_per_refill() -> None:
    clock = Clock()
    rate = SessionRate(60.0, 3, clock=clock)  # one token a second
    assert [rate.take("203.0.113.7", None) for _ in range(3)] == [None, None, None]
    refused = rate.take("203.0.113.7", None)
    assert refused is not None and refused.kind == "address" and refused.wait_s == pytest.approx(1.0)
    clock.now_s += 0.25
    again = rate.take("203.0.113.7", None)  # a refusal costs nothing: the wait only shrinks
    assert again is not None and again.wait_s == pytest.approx(0.75)
    clock.now_s += 0.75
    assert rate.take("203.0.113.7", None) is None
    assert rate.take("203.0.113.7", None) is not None
    clock.now_s += 3600.0  # refills up to the burst, never past it
    assert [rate.take("203.0.113.7", None) for _ in range(4)][-1] is not None


def test_a_start_needs_a_token_from_its_address_and_its_key() -> None:
    clock = Clock()
    rate = SessionRate(60.0, 2, clock=clock)
    assert rate.take("203.0.113.7", "key-a") is None
    assert rate.take("203.0.113.8", "key-a") is None
    refused = rate.take("203.0.113.9", "key-a")  # a fresh address, a spent key
    assert refused is not None and refused.kind == "key"
    assert rate.addresses.tokens("203.0.113.9", clock()) == 2  # not charged for the refusal
    assert rate.take("203.0.113.7", "key-b") is None  # the address had one token left
    refused = rate.take("203.0.113.7", "key-c")
    assert refused is not None and refused.kind == "address"
    assert rate.keys.tokens("key-c", clock()) == 2
    assert rate.take(None, None) is None  # loopback without a key: nothing to charge


def test_rate_zero_turns_it_off() -> None:
    rate = SessionRate(0.0, 1, clock=Clock())
    assert all(rate.take("203.0.113.7", "key") is None for _ in range(100))
    assert len(rate.addresses) == 0


def test_buckets_are_bounded_and_the_least_recently_charged_goes_first() -> None:
    buckets = Buckets(1.0, 5, max_buckets=100)
    for i in range(10_000):
        buckets.take(f"198.51.{i // 256}.{i % 256}", 0.0)
    assert len(buckets) == 100
    buckets = Buckets(1.0, 5, max_buckets=2)
    for name in ("a", "b", "a", "c"):
        buckets.take(name, 0.0)
    assert buckets.tokens("a", 0.0) == 3 and buckets.tokens("c", 0.0) == 4
    assert buckets.tokens("b", 0.0) == 5  # forgotten: a full burst again
    buckets.take("d", 4.5)  # "a" and "c" have refilled by now: no different from no bucket
    assert len(buckets) == 1


def test_admission_charges_addresses_and_keys_but_not_loopback() -> None:
    settings = Settings(stt=("en=fake",), session_rate_per_min=60.0, session_rate_burst=2)
    gateway = create_app(settings).state.gateway
    gateway.ready = True
    gateway.session_rate.clock = Clock()
    anonymous, keyed, token = Principal("anonymous"), Principal("abc123"), Principal("abc123", token_id="n1")
    assert admission.arrival(gateway, anonymous, "203.0.113.7") is None
    assert admission.arrival(gateway, anonymous, "203.0.113.7") is None
    refused = admission.arrival(gateway, anonymous, "203.0.113.7")
    assert isinstance(refused, admission.TooFast) and refused.close == 1013 and "address" in refused.message
    assert refused.code.value == "overloaded" and refused.retry_after_s == pytest.approx(1.0)
    assert all(admission.arrival(gateway, anonymous, "127.0.0.1") is None for _ in range(10))
    assert admission.arrival(gateway, keyed, "127.0.0.1") is None
    assert admission.arrival(gateway, token, "127.0.0.1") is None  # a token counts against its key
    refused = admission.arrival(gateway, keyed, None)
    assert refused is not None and "key" in refused.message
    assert admission.refusal(gateway, keyed, None) is None  # the check at `start` charges nothing
    admission.rejected(gateway, refused)
    assert gateway.metrics.rejections.labels(reason="session_rate")._value.get() == 1
