"""The audit trail under /api/v1/events: oldest first, by session and time, a page at a time."""

from __future__ import annotations

import datetime
import math
from urllib.parse import urlencode

from aiohttp import web

from vgpustream.api.answers import ERRORS, json_answer
from vgpustream.api.route import INT, TEXT, Json, Route
from vgpustream.api.schemas import EventPage
from vgpustream.api.state import AUDIT
from vgpustream.errors import VgpuStreamError

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def since_time(text: str) -> float:
    """`since`: an RFC 3339 time (2026-11-29T06:00:00Z) or seconds since the epoch."""
    try:
        value = float(text) if text.replace(".", "", 1).isdigit() else None
        if value is None:
            moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                raise ValueError(text)
            value = moment.timestamp()
    except (ValueError, OverflowError):
        raise VgpuStreamError("'since' must be an RFC 3339 time with its offset, or seconds since the epoch") from None
    if not math.isfinite(value):
        raise VgpuStreamError("'since' must be a finite time")
    return value


def whole(text: str, name: str, low: int, high: int) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 18 and low <= int(text) <= high):
        raise VgpuStreamError(f"'{name}' must be a whole number within {low}..{high}")
    return int(text)


async def list_events(request: web.Request) -> web.Response:
    """A page of events; `next` links the following page (null at the end of the trail as it is now)."""
    query = request.query
    unknown = set(query) - {"session", "since", "after", "limit"}
    if unknown:
        raise VgpuStreamError(f"unknown parameter(s): {', '.join(repr(k[:40]) for k in sorted(unknown)[:5])}")
    session = query.get("session")
    since = since_time(query["since"]) if "since" in query else None
    after = whole(query.get("after", "0"), "after", 0, 2**62)
    limit = whole(query.get("limit", str(DEFAULT_LIMIT)), "limit", 1, MAX_LIMIT)
    events = request.app[AUDIT].events(session, since, after, limit)
    following = None
    if len(events) == limit:
        kept = {k: v for k, v in query.items() if k != "after"}
        following = f"/api/v1/events?{urlencode({**kept, 'after': events[-1].id})}"
    return web.json_response({"events": [event.to_json() for event in events], "next": following})


def page_parameters(after: str) -> tuple[Json, ...]:
    """The query parameters of a paged list: `after` (described as `after`) and `limit`."""
    return (
        {"name": "after", "in": "query", "required": False, "schema": {**INT, "minimum": 0}, "description": after},
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {**INT, "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        },
    )


ROUTES = [
    Route(
        "GET",
        "/api/v1/events",
        list_events,
        "listEvents",
        "The audit trail, oldest first, a page at a time",
        tag="audit",
        answers={"200": json_answer(EventPage, "A page of events"), **ERRORS},
        parameters=(
            {"name": "session", "in": "query", "required": False, "schema": TEXT},
            {
                "name": "since",
                "in": "query",
                "required": False,
                "schema": TEXT,
                "description": "RFC 3339 time with offset, or seconds since the epoch",
            },
            *page_parameters("only events with a greater id (the `next` link sets it)"),
        ),
    )
]
