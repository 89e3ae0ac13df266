"""Renditions: what a session encodes, once each, for the viewers (and the recording) that take it.

A rendition is a codec at the session's encoder settings (its size, frame rate and bitrate). The session's top
rendition is H.264; another runs only while a seat is on it (a WebRTC viewer whose browser has no H.264 gets
VP8), from the same captured and converted picture, and stops when its last seat leaves. The capture loop
keeps an encoder for each running rendition (vgpustream.capture.pipeline); the audience subscribes each seat
to one and feeds it that rendition's packets. Nothing else knows how many encoders run.
"""

from __future__ import annotations

from dataclasses import dataclass

from vgpustream.encoder import CODECS


@dataclass(frozen=True, order=True)
class Rendition:
    """One encoded stream of a session: its codec (one of vgpustream.encoder.CODECS)."""

    codec: str

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"no encoder for {self.codec!r}")

    @property
    def name(self) -> str:
        """Its name in the API and the metrics' labels."""
        return self.codec


TOP = Rendition("h264")
"""The session's own rendition: what WebSocket viewers and recordings take, and WebRTC viewers whose browser
decodes H.264."""
