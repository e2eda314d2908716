"""The sandbox's audit log: events in time order, read a window and a page at a time.

``GET /api/v1/audit-logs`` takes ``start_time`` and ``end_time`` (both inclusive) and pages with
an opaque ``cursor`` (base64 JSON, sent back as given). LangSmith documents neither the order
nor how the cursor ends (``langsmith-api.md``, "Audit logs"); the sandbox answers newest first
and ends with a null cursor, and clients must not rely on either. Its cursor marks a position
(``time_ms``, ``id``), so events recorded while a client pages do not shift the pages after it.
"""

from __future__ import annotations

import base64
import bisect
import json
from collections.abc import Callable, Iterator

from langsmith_access.sandbox.access_records import AuditEvent

Position = tuple[int, str]  # (time_ms, event id): the log's order


def _position(event: AuditEvent) -> Position:
    return (event.time_ms, event.id)


def encode_cursor(position: Position) -> str:
    text = json.dumps({"time_ms": position[0], "id": position[1]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode()


def decode_cursor(cursor: str) -> Position:
    """The position a cursor names; ValueError for anything this log did not issue."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        time_ms, event_id = data["time_ms"], data["id"]
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"not a cursor of this audit log: {error}") from None
    if not isinstance(time_ms, int) or not isinstance(event_id, str):
        raise ValueError("not a cursor of this audit log")
    return (time_ms, event_id)


class AuditLog:
    """Append-only events kept in ``(time_ms, id)`` order. Not thread-safe on its own: the
    ``OrgState`` that owns it guards it with its lock."""

    def __init__(self) -> None:
        self._events: list[AuditEvent] = []
        self._positions: list[Position] = []

    def append(self, event: AuditEvent) -> AuditEvent:
        position = _position(event)
        index = bisect.bisect_right(self._positions, position)
        self._positions.insert(index, position)
        self._events.insert(index, event)
        return event

    def extend(self, events: list[AuditEvent]) -> None:
        """Add many events at once (a generated history): one sort instead of one insert each."""
        merged = sorted([*self._events, *events], key=_position)
        self._events = merged
        self._positions = [_position(event) for event in merged]

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[AuditEvent]:
        return iter(list(self._events))

    def events(self) -> list[AuditEvent]:
        """Every event, oldest first."""
        return list(self._events)

    def page(
        self,
        start_ms: int,
        end_ms: int,
        *,
        limit: int,
        after: Position | None = None,
        keep: Callable[[AuditEvent], bool] | None = None,
    ) -> tuple[list[AuditEvent], Position | None]:
        """Up to ``limit`` events with ``start_ms <= time_ms <= end_ms`` that ``keep`` accepts,
        newest first, starting after the position ``after`` (a previous page's last event).
        Returns the page and the position to continue from (None when nothing is left)."""
        low = bisect.bisect_left(self._positions, (start_ms, ""))
        # Every id sorts below "\uffff": this bound includes events at exactly end_ms.
        high = bisect.bisect_right(self._positions, (end_ms, "\uffff"))
        if after is not None:
            high = min(high, bisect.bisect_left(self._positions, after))
        page: list[AuditEvent] = []
        index = high - 1
        while index >= low:
            event = self._events[index]
            if keep is None or keep(event):
                if len(page) == limit:
                    # One more match exists: the page is full and a next one follows.
                    return page, _position(page[-1])
                page.append(event)
            index -= 1
        return page, None
