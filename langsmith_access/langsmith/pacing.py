"""Client-side pacing: a shared request-rate limiter, the counters a run reports, and how long a
server's ``Retry-After`` asks to wait (LangSmith's, and a webhook receiver's)."""

from __future__ import annotations

import collections
import email.utils
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

WINDOW_SECONDS = 60.0
# LangSmith also counts each key's requests per 10 seconds (1000 on Cloud US/EU, half its 2000
# a minute; langsmith-api.md, "Rate limits"): the short window is a sixth of the minute, and
# holds at most half of the minute's budget.
BURST_WINDOW_SHARE = 1 / 6
BURST_BUDGET_SHARE = 1 / 2


class RateLimiter:
    """At most ``requests_per_minute`` requests in any 60-second window, and at most half of
    that in any 10 seconds, shared by every thread of one client.

    The API limits each key per minute (about 2000) and per 10 seconds (about 1000), so the
    budget has both windows: it keeps the send times of recent requests and lets a request go
    when both windows have room. Within the budget requests go as fast as the caller sends
    them (a 700-call read does not wait at all); past it, each waits for a slot to free up.
    With the default 1500 no minute sees more than 1500 of our requests and no 10 seconds more
    than 750, three quarters of the API's limits, which leaves room for other clients of the
    same key.
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
        # Rounded down: an odd budget's half is not a whole request, and "at most half" holds.
        self.burst_capacity = max(1, math.floor(self.capacity * BURST_BUDGET_SHARE))
        self.burst_window_seconds = WINDOW_SECONDS * BURST_WINDOW_SHARE
        # Send times of the requests still inside each window, oldest first.
        self._sent: collections.deque[float] = collections.deque()
        self._burst_sent: collections.deque[float] = collections.deque()
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take a slot in both windows, sleeping until there is one. Returns the seconds waited."""
        windows = ((self._sent, self.window_seconds, self.capacity),
                   (self._burst_sent, self.burst_window_seconds, self.burst_capacity))
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                delay = 0.0
                for sent, length, capacity in windows:
                    while sent and sent[0] <= now - length:
                        sent.popleft()
                    if len(sent) >= capacity:
                        delay = max(delay, sent[0] + length - now)
                if delay <= 0:
                    self._sent.append(now)
                    self._burst_sent.append(now)
                    return waited
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


def retry_after_seconds(raw: str | None, *, longest: float, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds (a number, or an HTTP date, counted from ``now``: the clock by
    default), at most ``longest``; None if absent or bad."""
    if raw is None or not raw.strip():
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
        if not math.isfinite(seconds):
            return None
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), longest)
