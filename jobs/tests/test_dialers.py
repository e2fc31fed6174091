from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from jobs.dialers import get_dialer
from jobs.dialers.base import CallHandle, CallResult, Outcome
from jobs.dialers.simulated import (
    SimulatedDialer,
    parse_call_seconds,
    parse_outcomes,
    parse_seed,
)


def test_parse_call_seconds__accepts_a_number_or_a_range():
    assert parse_call_seconds("3") == (3.0, 3.0)
    assert parse_call_seconds("1-5") == (1.0, 5.0)
    assert parse_call_seconds("0.5-0.5") == (0.5, 0.5)


@pytest.mark.parametrize("raw", ["", "abc", "5-1", "-1", "1-x"])
def test_parse_call_seconds__rejects_bad_values_naming_the_variable(raw):
    with pytest.raises(ImproperlyConfigured, match="SIMULATED_CALL_SECONDS"):
        parse_call_seconds(raw)


def test_parse_outcomes__reads_weights():
    assert parse_outcomes("answered=0.7, busy=0.3") == {
        "answered": 0.7,
        "busy": 0.3,
    }


@pytest.mark.parametrize(
    "raw", ["", "answered", "hello=1", "answered=x", "answered=-1", "busy=0"]
)
def test_parse_outcomes__rejects_bad_values_naming_the_variable(raw):
    with pytest.raises(ImproperlyConfigured, match="SIMULATED_OUTCOMES"):
        parse_outcomes(raw)


def test_parse_seed__is_an_integer_or_none():
    assert parse_seed("") is None
    assert parse_seed("42") == 42
    with pytest.raises(ImproperlyConfigured, match="SIMULATED_SEED"):
        parse_seed("forty-two")


def test_simulated_dialer__is_deterministic_with_a_seed():
    mix = parse_outcomes("answered=0.4,busy=0.2,no_answer=0.2,voicemail=0.2")

    def draws(seed):
        dialer = SimulatedDialer(call_seconds=(1, 5), outcomes=mix, seed=seed)
        return [dialer.draw() for _ in range(50)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    assert {outcome for _, outcome in draws(7)} == set(mix)


def test_simulated_dialer__call_resolves_after_its_duration():
    dialer = SimulatedDialer(call_seconds=(0.01, 0.01), outcomes={"voicemail": 1})

    handle = dialer.place_call(job=None)
    result = handle.result(timeout=5)

    assert result.outcome == Outcome.VOICEMAIL
    assert not result.hung_up


def test_simulated_dialer__hangup_resolves_at_once_with_the_outcome_so_far():
    dialer = SimulatedDialer(call_seconds=(60, 60), outcomes={"answered": 1})
    handle = dialer.place_call(job=None)

    dialer.hangup(handle)

    result = handle.result(timeout=0)
    assert result.outcome == Outcome.ANSWERED
    assert result.hung_up
    assert result.duration_seconds < 5


def test_simulated_dialer__a_held_call_ends_once_the_hold_file_exists(tmp_path):
    release = tmp_path / "release"
    dialer = SimulatedDialer(
        call_seconds=(0, 0), outcomes={"answered": 1}, hold_file=str(release)
    )
    held = dialer.place_call(job=None)
    hung_up = dialer.place_call(job=None)

    assert held.result(timeout=0.2) is None  # its duration is over: still held
    dialer.hangup(hung_up)
    hung_up_result = hung_up.result(timeout=0)
    assert hung_up_result is not None
    assert hung_up_result.hung_up is True
    release.touch()
    result = held.result(timeout=30)
    assert result is not None
    assert (result.outcome, result.hung_up) == ("answered", False)


def test_call_handle__a_provider_callback_resolves_it_once():
    handle = CallHandle("provider-123")

    assert handle.result(timeout=0) is None
    assert handle.resolve(CallResult(outcome=Outcome.NO_ANSWER))
    assert not handle.resolve(CallResult(outcome=Outcome.ANSWERED))
    assert handle.result(timeout=0).outcome == Outcome.NO_ANSWER
    with pytest.raises(ValueError, match="unknown call outcome"):
        CallHandle("x").resolve(CallResult(outcome="maybe"))


def test_get_dialer__knows_simulated_and_names_the_unknown():
    assert get_dialer("simulated").name == "simulated"
    with pytest.raises(ImproperlyConfigured, match="nope"):
        get_dialer("nope")
