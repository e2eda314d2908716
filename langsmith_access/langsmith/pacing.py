"""Client-side pacing: a shared request-rate limiter, and the counters a run reports."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

WINDOW_SECONDS = 60.0


class RateLimiter:
    """At most ``requests_per_minute`` requests in any 60-second window, shared by every thread
    of one client.

    The API's limit is per minute (about 2000 per key), so the budget is too: it keeps the
    send time of the last ``requests_per_minute`` requests and lets a request go when the
    oldest of them is a full window old. Within a minute requests go as fast as the caller
    sends them (a 1,000-call sync does not wait at all); past the budget, each waits for a slot
    to free up. With the default 1500 no minute ever sees more than 1500 of our requests,
    well below the API's ~2000, which leaves room for other clients of the same key.
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
        # Scaled with the window, so a test may shorten it.
        self.capacity = max(1, round(requests_per_minute * WINDOW_SECONDS / 60.0))
        self.window_seconds = WINDOW_SECONDS
        self._sent: collections.deque[float] = collections.deque()
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take a slot in the window, sleeping until there is one. Returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                while self._sent and self._sent[0] <= now - self.window_seconds:
                    self._sent.popleft()
                if len(self._sent) < self.capacity:
                    self._sent.append(now)
                    return waited
                delay = self._sent[0] + self.window_seconds - now
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
