"""Exponential backoff with jitter for calls that cross the network."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    attempts: int = 5
    base_seconds: float = 1.0
    max_seconds: float = 30.0

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """Equal jitter: half the exponential step, plus a random part of the other half."""
        step = min(self.max_seconds, self.base_seconds * 2 ** (failures - 1))
        return step / 2 + rand() * step / 2

    def run(
        self,
        fn: Callable[[], T],
        is_transient: Callable[[BaseException], bool],
        on_retry: Callable[[int, BaseException, float], None] = lambda *_: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> T:
        """Call `fn`; retry transient failures up to `attempts` calls in all (at least one)."""
        last = max(1, self.attempts)  # attempts=0 used to end in "unreachable" without a call
        for attempt in range(1, last + 1):
            try:
                return fn()
            except Exception as exc:
                if attempt == last or not is_transient(exc):
                    raise
                wait = self.delay(attempt)
                on_retry(attempt, exc, wait)
                sleep(wait)
        raise AssertionError("unreachable")
