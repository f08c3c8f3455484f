"""`interlock up` and `down` say what they wait for: each new reason once, the same one again
only after a while, and a timeout names what was awaited and why it was not done."""

from __future__ import annotations

import time

import pytest

from interlock.errors import OperatorError
from interlock.operator import wait_until


def test_each_new_reason_is_said_once_and_the_wait_ends_when_nothing_is_pending() -> None:
    reasons = iter(["0 of 2 tasks running", "0 of 2 tasks running", "1 of 2 tasks running", ""])
    said: list[str] = []
    wait_until(lambda: next(reasons), time.monotonic() + 60, "the proxies", said.append, interval=0)
    assert [line.split(" (")[0] for line in said] == ["  ... 0 of 2 tasks running", "  ... 1 of 2 tasks running"]
    assert all(line.endswith(" s)") for line in said), "each line says how long it has waited"


def test_the_same_reason_is_said_again_after_repeat_after() -> None:
    reasons = iter(["proxy abc does not serve 1a2b yet"] * 3 + [""])
    said: list[str] = []
    wait_until(lambda: next(reasons), time.monotonic() + 60, "x", said.append, interval=0, repeat_after=0)
    assert len(said) == 3


def test_a_timeout_names_what_was_awaited_and_the_last_reason() -> None:
    with pytest.raises(OperatorError, match=r"timed out waiting for the core to stop: 1 task\(s\) of interlock"):
        wait_until(lambda: "1 task(s) of interlock still running", time.monotonic() - 1, "the core to stop", print)
