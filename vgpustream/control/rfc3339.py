"""Times as the API and the audit webhook write them: RFC 3339, in UTC (2026-12-04T23:55:00Z)."""

from __future__ import annotations

import datetime
from typing import Literal


def timestamp(seconds: float, timespec: Literal["seconds", "milliseconds"] = "seconds") -> str:
    """`seconds` since the epoch as an RFC 3339 UTC time, to the second or the millisecond."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")
