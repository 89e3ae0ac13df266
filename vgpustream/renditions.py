"""Renditions: what a session encodes, once each, for the viewers (and the recording) that take it.

A rendition is a codec at a rung of the session's ladder: rung 0 is the session's encoder settings, each rung
below keeps the size and halves the frame rate and quarters, then eighths, the bitrate (text stays sharp; a
still picture is refined on every rung). The session's top rendition is H.264 at rung 0; another runs only
while a seat is on it (a WebRTC viewer whose browser has no H.264 gets VP8, a viewer whose link cannot carry
its rung steps down: vgpustream.audience), from the same captured and converted picture, and stops when its
last seat leaves. The capture loop
keeps an encoder for each running rendition (vgpustream.capture.pipeline); the audience subscribes each seat
to one and feeds it that rendition's packets. Nothing else knows how many encoders run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vgpustream.encoder import CODECS, MIN_BITRATE, EncoderSettings

RUNGS = ((1, 1), (2, 4), (2, 8))
"""Each rung's (frame-rate divisor, bitrate divisor) of the session's settings, top first."""
FIT_MARGIN = 0.8
"""The share of a link's estimated rate a rung's bitrate may take."""


@dataclass(frozen=True, order=True)
class Rendition:
    """One encoded stream of a session: its codec (one of vgpustream.encoder.CODECS) at a rung of RUNGS."""

    codec: str
    rung: int = 0

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"no encoder for {self.codec!r}")
        if not 0 <= self.rung < len(RUNGS):
            raise ValueError(f"no rung {self.rung}: 0..{len(RUNGS) - 1}")

    @property
    def name(self) -> str:
        """Its name in the API and the metrics' labels: the codec, and the rung below the top."""
        return self.codec if self.rung == 0 else f"{self.codec}/{self.rung}"

    def settings(self, top: EncoderSettings) -> EncoderSettings:
        """Its encoder settings, from the session's."""
        return replace(top, fps=max(1, top.fps // RUNGS[self.rung][0]), bitrate=self.bitrate(top.bitrate))

    def bitrate(self, top: int) -> int:
        """Its bitrate (bits per second), from the session's."""
        return max(MIN_BITRATE, top // RUNGS[self.rung][1])

    def fits(self, estimate: int, top: int) -> bool:
        """Whether a link estimated to carry `estimate` bits per second carries this rung, with FIT_MARGIN to
        spare (packet headers, keyframes above the average)."""
        return self.bitrate(top) <= FIT_MARGIN * estimate

    def lower_within(self, estimate: int | None, top: int) -> Rendition | None:
        """The highest rung below this one that fits a link `estimate`d to carry that many bits per second
        (the bottom one where none does; the next one down without an estimate; None at the bottom)."""
        lower = self.lower()
        if lower is None or estimate is None:
            return lower
        while not lower.fits(estimate, top) and (further := lower.lower()) is not None:
            lower = further
        return lower

    def lower(self) -> Rendition | None:
        """The rung below (None at the bottom)."""
        return replace(self, rung=self.rung + 1) if self.rung + 1 < len(RUNGS) else None

    def higher(self) -> Rendition | None:
        """The rung above (None at the top)."""
        return replace(self, rung=self.rung - 1) if self.rung > 0 else None


TOP = Rendition("h264")
"""The session's own rendition: what WebSocket viewers and recordings take, and WebRTC viewers whose browser
decodes H.264."""
