"""Renditions: what a session encodes, once each, for the viewers (and the recording) that take it.

A rendition is a codec at a rung of the session's ladder (vgpustream.media.encoder.RUNGS): rung 0 is the session's
encoder settings, each rung below keeps the size and lowers the bitrate, and the frame rate less (text stays
sharp; a still picture is refined on every rung). The session's top rendition is H.264 at rung 0; another runs only
while a seat is on it (a WebRTC viewer whose browser has no H.264 gets VP8, a viewer whose link cannot carry
its rung steps down: vgpustream.audience), from the same captured and converted picture, and stops when its
last seat leaves. The capture loop
keeps an encoder for each running rendition (vgpustream.capture.pipeline); the audience subscribes each seat
to one and feeds it that rendition's packets. Nothing else knows how many encoders run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vgpustream.errors import VgpuStreamError
from vgpustream.media.encoder import CODECS, MIN_BITRATE, RUNGS, EncoderSettings

FIT_MARGIN = 0.8
"""The share of a link's estimated rate a rung's bitrate may take."""


@dataclass(frozen=True, order=True)
class Rendition:
    """One encoded stream of a session: its codec (one of vgpustream.media.encoder.CODECS) at a rung of RUNGS."""

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
        return replace(top, fps=max(1, round(top.fps / RUNGS[self.rung][0])), bitrate=self.bitrate(top))

    def bitrate(self, top: EncoderSettings) -> int:
        """Its bitrate (bits per second), from the session's settings."""
        return max(MIN_BITRATE, round(top.bitrate / RUNGS[self.rung][1]))

    def fits(self, estimate: int, top: EncoderSettings) -> bool:
        """Whether a link estimated to carry `estimate` bits per second carries this rung, with FIT_MARGIN to
        spare (packet headers, keyframes above the average)."""
        return self.bitrate(top) <= FIT_MARGIN * estimate

    def lower_within(self, estimate: int | None, top: EncoderSettings) -> Rendition | None:
        """The highest rung below this one that fits a link `estimate`d to carry that many bits per second
        (the bottom one where none does; the next one down without an estimate; None at the bottom)."""
        lower = self.lower(top)
        if lower is None or estimate is None:
            return lower
        while not lower.fits(estimate, top) and (further := lower.lower(top)) is not None:
            lower = further
        return lower

    def lower(self, top: EncoderSettings) -> Rendition | None:
        """The rung below (None at the bottom of the session's ladder: `top.rungs` rungs)."""
        return replace(self, rung=self.rung + 1) if self.rung + 1 < top.rungs else None

    def within(self, top: EncoderSettings) -> Rendition:
        """This rendition, or the bottom of the session's ladder where that is above it."""
        return replace(self, rung=min(self.rung, top.rungs - 1))

    def higher(self) -> Rendition | None:
        """The rung above (None at the top)."""
        return replace(self, rung=self.rung - 1) if self.rung > 0 else None

    def higher_within(self, estimate: int, top: EncoderSettings) -> Rendition | None:
        """The highest rung above this one that fits a link `estimate`d to carry that many bits per second (None
        where none does)."""
        higher = (replace(self, rung=rung) for rung in range(self.rung))
        return next((rendition for rendition in higher if rendition.fits(estimate, top)), None)


QUALITIES = ("auto", *(str(rung) for rung in range(len(RUNGS))))
"""What a viewer may ask for (`quality=` of the console, WHEP and WebSocket URLs): the ladder's choice, or a rung
to stay on (0 is the top)."""


def pinned_rung(quality: str, top: EncoderSettings) -> int | None:
    """The rung a viewer asking for `quality` stays on (the bottom of the session's ladder where it asked for one
    below it), or None for the ladder's choice."""
    check_quality(quality)
    return None if quality == "auto" else min(int(quality), top.rungs - 1)


def check_quality(quality: str) -> None:
    """VgpuStreamError (400) unless `quality` is one of QUALITIES."""
    if quality not in QUALITIES:
        raise VgpuStreamError(f"quality must be one of {', '.join(QUALITIES)}")


TOP = Rendition("h264")
"""The session's own rendition: what WebSocket viewers and recordings take, and WebRTC viewers whose browser
decodes H.264."""
