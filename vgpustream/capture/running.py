"""The renditions a capture loop encodes now: which, when each needs a keyframe, and what each has made."""

from __future__ import annotations

from dataclasses import dataclass

from vgpustream.capture.keyframes import KeyframePolicy
from vgpustream.capture.pipeline import Decisions, Encoded
from vgpustream.capture.stats import CaptureStats, RateMeter
from vgpustream.media.renditions import Rendition


@dataclass
class RenditionState:
    """What the loop keeps of one running rendition, on the event loop: when it needs a keyframe, and its counts."""

    keyframes: KeyframePolicy
    stats: CaptureStats
    rate: RateMeter
    size: tuple[int, int] | None = None
    """The size of the pictures it encodes (None before the first)."""


class RunningRenditions:
    """The renditions encoded now, each with its keyframe policy and counts, on the event loop; a rendition
    nobody takes any more is dropped (its next start is a keyframe)."""

    def __init__(self, keyframe_interval: float) -> None:
        self.states: dict[Rendition, RenditionState] = {}
        self._keyframe_interval = keyframe_interval

    def keep(self, wanted: set[Rendition]) -> bool:
        """Keep state for the renditions `wanted` (a new one starts with a keyframe), and only those; whether any is."""
        for rendition in self.states.keys() - wanted:
            del self.states[rendition]
        for rendition in wanted - self.states.keys():
            keyframes = KeyframePolicy(self._keyframe_interval)
            self.states[rendition] = RenditionState(keyframes, CaptureStats(), RateMeter())
        return bool(wanted)

    def set_keyframe_interval(self, interval: float) -> None:
        self._keyframe_interval = interval
        for state in self.states.values():
            state.keyframes.interval = interval

    def request_keyframe(self, rendition: Rendition | None = None) -> None:
        """An IDR of `rendition` (of every running one if None) at the next step."""
        for running, state in self.states.items():
            if rendition is None or running == rendition:
                state.keyframes.request()

    def decisions(self, now: float, forced: bool = False) -> Decisions:
        """Whether each rendition's next frame must be an IDR, and whether its next changed one should be."""
        return {
            rendition: (True, False) if forced else state.keyframes.due(now) for rendition, state in self.states.items()
        }

    def count(
        self, rendition: Rendition, encoded: Encoded, *, size: int, keyframes: int, at: float, now: float
    ) -> None:
        """Count what `rendition` made of one step (`size` bytes, `keyframes` of its packets)."""
        state = self.states.get(rendition)
        if state is None:  # dropped while it was encoded: nobody takes it any more
            return
        state.stats.frames_encoded += 1
        state.stats.bytes_encoded += size
        state.stats.keyframes += keyframes
        state.rate.add(at, size)
        state.size = encoded.size
        if keyframes:
            state.keyframes.sent(now)
