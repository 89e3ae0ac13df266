"""What an audience counts: one set of counters per session, each counted by the part whose job it is."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AudienceStats:
    """The session's viewer counters; the input router, the publisher and the rung switcher each count their own."""

    input_events: int = 0
    input_invalid: int = 0
    input_refused: int = 0
    keyframe_requests_limited: int = 0
    """Viewers' own keyframe requests (PLI/FIR) held back by VIEWER_KEYFRAME_INTERVAL."""
    viewers_flooding: int = 0
    """Viewers disconnected for sending data-channel messages faster than they may."""
    joins_replayed: int = 0
    """Viewers that started from the replay of the packets since the keyframe (JoinReplay)."""
    rung_changes: int = 0
    """Viewers moved down or up a rung (their link was poor, or good for long enough)."""
    joins_on_a_keyframe: int = 0
    """Viewers that started from a fresh keyframe (the replay would have shown the past, or there was none)."""
