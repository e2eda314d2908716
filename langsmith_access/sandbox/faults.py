"""Fault injection for the sandbox server: latency, 429s, 5xx, hangs, dropped connections,
page drift and writes whose response is lost.

A ``FaultConfig`` can be changed while the server runs: the server reads it on every request.
The server applies faults in this order, like a proxy in front of LangSmith would, before it
looks at the API key or the route:

1. ``latency_ms`` on every request;
2. ``rate_limit_per_minute`` and ``rate_limit_per_10_seconds`` (a 429 once a key sent more than
   N requests in its current window of that length);
3. one random draw that picks at most one of: 429 (``throttle_rate``), dropped connection
   (``drop_rate``), hang (``hang_rate``, then the request is served normally) or 5xx
   (``error_rate``); so a random 5xx on a write is answered before the write is applied;
4. ``failing_routes`` and ``failing_workspaces`` (always 500).

Three faults act inside the API instead: ``page_drift_members``, ``fail_writes_after_apply`` and
``leak_full_keys``.
"""

from __future__ import annotations

import enum
import math
import random
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate

RATE_LIMIT_WINDOW_SECONDS = 60
# "rolling": a key's window starts at its first request after the last one ended, and a 429
# says when to come back (Retry-After). "fixed-window": the same window, as LangSmith's load
# balancer answers it: 429 without Retry-After until the window ends.
RATE_LIMIT_MODES = ("rolling", "fixed-window")
ERROR_STATUSES = (500, 502, 503, 504)


class RandomFault(enum.Enum):
    THROTTLE = "throttle"  # 429 with Retry-After
    DROP = "drop"  # close the connection without a response
    HANG = "hang"  # answer only after hang_seconds
    ERROR = "error"  # 500, 502, 503 or 504


@dataclass
class FaultConfig:
    """What the sandbox does wrong, and how often. All rates are per-request probabilities.

    - ``latency_ms``: added to every response.
    - ``error_rate``: random 500/502/503/504 with body ``{"detail": "..."}``.
    - ``throttle_rate``: random 429 with ``Retry-After``.
    - ``retry_after_seconds``: the ``Retry-After`` of random 429s.
    - ``retry_after_as_http_date``: send ``Retry-After`` as an HTTP date instead of seconds.
    - ``rate_limit_per_minute``: None, or N: once more than N requests with one API key arrived
      in the current 60 s window (which starts at that key's first request), answer 429 with
      ``Retry-After`` = seconds until the window ends, rounded up.
    - ``rate_limit_mode``: ``"rolling"`` (429 with ``Retry-After``, as above) or
      ``"fixed-window"`` (429 without ``Retry-After`` until the window ends).
    - ``rate_limit_per_10_seconds``: None, or N: the same for a window a sixth as long (10 s,
      as LangSmith's per-second table for Cloud US/EU: 1000), counted beside the minute's.
    - ``rate_limit_window_seconds``: the minute window's length (None: 60, as LangSmith's;
      shorter in tests; the short window is a sixth of it).
    - ``failing_routes``: paths that always answer 500. An entry matches every path that starts
      with it; an entry ending in ``$`` matches only the exact path before the ``$``.
    - ``failing_workspaces``: workspace ids whose ``/api/v1/workspaces/current/...`` routes
      (selected by ``X-Tenant-Id``) always answer 500.
    - ``hang_rate``, ``hang_seconds``: answer only after ``hang_seconds`` (cut short, without an
      answer, when the server stops).
    - ``drop_rate``: close the connection without any response.
    - ``page_drift_members``: while serving org member pages at offset > 0, add one new active
      member per page served, up to this many (the field counts down), so offsets shift.
    - ``fail_writes_after_apply``: the next N successful writes are applied but answered 502,
      like a response lost on the way back (the field counts down).
    - ``leak_full_keys``: misbehave like a broken server: listings of service keys, workspace
      keys, personal access tokens and SCIM tokens carry each full secret (in ``short_key`` /
      ``short_token`` and in ``key`` / ``token``), which LangSmith only returns at creation.
    - ``seed``: seed of the random generator behind the rates.
    """

    latency_ms: float = 0
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after_seconds: int = 1
    retry_after_as_http_date: bool = False
    rate_limit_per_minute: int | None = None
    rate_limit_per_10_seconds: int | None = None
    rate_limit_mode: str = "rolling"
    rate_limit_window_seconds: float | None = None  # None: RATE_LIMIT_WINDOW_SECONDS
    failing_routes: tuple[str, ...] = ()
    failing_workspaces: tuple[str, ...] = ()
    hang_rate: float = 0.0
    hang_seconds: float = 30
    drop_rate: float = 0.0
    page_drift_members: int = 0
    fail_writes_after_apply: int = 0
    leak_full_keys: bool = False
    seed: int = 0

    _rng: random.Random = field(init=False, repr=False, compare=False)
    _lock: threading.Lock = field(init=False, repr=False, compare=False)
    # (API key fingerprint, window length) -> [window start (monotonic seconds), requests in it]
    _rate_windows: dict[tuple[str, float], list] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.rate_limit_mode not in RATE_LIMIT_MODES:
            raise ValueError(f"rate_limit_mode must be one of {', '.join(RATE_LIMIT_MODES)}")
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._rate_windows = {}

    def draw_random_fault(self) -> RandomFault | None:
        """One draw decides whether this request gets a random fault, and which."""
        with self._lock:
            draw = self._rng.random()
        for fault, rate in (
            (RandomFault.THROTTLE, self.throttle_rate),
            (RandomFault.DROP, self.drop_rate),
            (RandomFault.HANG, self.hang_rate),
            (RandomFault.ERROR, self.error_rate),
        ):
            if draw < rate:
                return fault
            draw -= rate
        return None

    def random_error_status(self) -> int:
        with self._lock:
            return self._rng.choice(ERROR_STATUSES)

    def seconds_until_rate_limit_resets(self, key_fingerprint: str) -> int | None:
        """Count this request in each window; None if it is within every limit, else the
        Retry-After seconds (until the last window it is over ends)."""
        minute = self.rate_limit_window_seconds or RATE_LIMIT_WINDOW_SECONDS
        limits = [(limit, length) for limit, length in ((self.rate_limit_per_minute, minute),
                                                        (self.rate_limit_per_10_seconds, minute / 6))
                  if limit is not None]
        if not limits:
            return None
        now = time.monotonic()
        wait = None
        with self._lock:
            for limit, length in limits:
                window = self._rate_windows.get((key_fingerprint, length))
                if window is None or now - window[0] >= length:
                    window = self._rate_windows[(key_fingerprint, length)] = [now, 0]
                window[1] += 1
                if window[1] > limit:
                    wait = max(wait or 0, max(1, math.ceil(window[0] + length - now)))
        return wait

    def retry_after_header(self, seconds: int) -> str:
        """``Retry-After`` for a wait of ``seconds``: the number, or an HTTP date that far ahead."""
        if self.retry_after_as_http_date:
            # HTTP dates have whole seconds: round up so a client never retries too early.
            return formatdate(math.ceil(time.time()) + seconds, usegmt=True)
        return str(seconds)

    def route_fails(self, path: str) -> bool:
        for entry in self.failing_routes:
            if entry.endswith("$") and path == entry[:-1]:
                return True
            if not entry.endswith("$") and path.startswith(entry):
                return True
        return False

    def workspace_fails(self, workspace_id: str | None) -> bool:
        if not workspace_id:
            return False
        return workspace_id.lower() in {failing.lower() for failing in self.failing_workspaces}

    def take_page_drift(self) -> bool:
        """True (and one fewer left) if a drift member should be added before this page."""
        with self._lock:
            if self.page_drift_members <= 0:
                return False
            self.page_drift_members -= 1
            return True

    def take_write_failure(self) -> bool:
        """True (and one fewer left) if this applied write must be answered 502."""
        with self._lock:
            if self.fail_writes_after_apply <= 0:
                return False
            self.fail_writes_after_apply -= 1
            return True
