"""Client-side pacing: a shared request-rate limiter, and the counters a run reports."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable


class RateLimiter:
    """Token bucket shared by every thread of one client.

    Tokens refill at ``requests_per_minute / 60`` per second and the bucket holds one second's
    worth, so no 60-second window ever sees more than ``requests_per_minute`` plus one second of
    burst: with the default 1500/min that is far below the API's ~2000/min.
    """

    def __init__(
        self,
        requests_per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive")
        self.rate_per_second = requests_per_minute / 60.0
        self.capacity = max(1.0, self.rate_per_second)
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until there is one. Returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(
                    self.capacity, self._tokens + (now - self._updated) * self.rate_per_second
                )
                self._updated = now
                if self._tokens >= 1.0 - 1e-9:  # float rounding must not spin forever
                    self._tokens -= 1.0
                    return waited
                delay = (1.0 - self._tokens) / self.rate_per_second
            self._sleep(delay)
            waited += delay


@dataclass
class CallStats:
    """What the client spent: for run metadata and ``sync_runs``. Thread-safe increments."""

    calls: int = 0  # HTTP requests actually sent (retries included)
    retries: int = 0  # requests sent again after a 429, 5xx, timeout or dropped connection
    rate_limited: int = 0  # 429 answers received
    server_errors: int = 0  # 5xx answers received
    connection_errors: int = 0  # timeouts and dropped connections
    wait_seconds: float = 0.0  # time spent in backoff, Retry-After and the rate limiter
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **increments: float) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self, name, getattr(self, name) + value)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {
                "calls": self.calls,
                "retries": self.retries,
                "rate_limited": self.rate_limited,
                "server_errors": self.server_errors,
                "connection_errors": self.connection_errors,
                "wait_seconds": round(self.wait_seconds, 3),
            }
