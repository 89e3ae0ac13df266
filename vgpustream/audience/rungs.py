"""The viewers' moves between the rungs of their codec's ladder: when (vgpustream.audience.ladder), where to,
and from which keyframe on."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vgpustream.audience.ladder import RungPolicy
from vgpustream.audience.seat import Seat
from vgpustream.audience.stats import AudienceStats
from vgpustream.media.encoder import EncoderSettings
from vgpustream.media.renditions import Rendition


@dataclass
class _Climb:
    """What the rung switcher keeps for one viewer."""

    policy: RungPolicy = field(default_factory=RungPolicy)
    switch_to: Rendition | None = None
    """The rendition the viewer moves to at its next keyframe (another rung of its codec)."""


class RungSwitcher:
    """Moves each viewer whose rung is not pinned down or up its ladder as its link's verdicts say, and switches
    it over at the keyframe of the rendition it moves to (asked for when it moves)."""

    def __init__(self, request_keyframe: Callable[[Rendition | None], None], stats: AudienceStats) -> None:
        self._request_keyframe = request_keyframe
        self._stats = stats
        self._climbs: dict[Seat, _Climb] = {}

    def add(self, viewer: Seat) -> None:
        self._climbs[viewer] = _Climb()

    def remove(self, viewer: Seat) -> None:
        self._climbs.pop(viewer, None)

    def moving_to(self) -> set[Rendition]:
        """The renditions viewers are moving to (which the session must encode as well)."""
        return {climb.switch_to for climb in self._climbs.values() if climb.switch_to is not None}

    def on_link(self, viewer: Seat, top: EncoderSettings) -> None:
        """A new verdict on a viewer's link: it may move down or up a rung of `top`'s ladder."""
        climb = self._climbs.get(viewer)
        if climb is None or viewer.rendition is None or viewer.link is None or climb.switch_to is not None:
            return
        if viewer.pinned is not None:  # the viewer asked for its rung (quality=)
            return
        rendition, estimate = viewer.rendition, viewer.link.estimate_bps
        lower, higher = rendition.lower(top), rendition.higher()
        roomy = rendition.higher_within(estimate, top) if estimate is not None and viewer.link.measured else None
        step = climb.policy.judge(
            time.monotonic(),
            viewer.link.quality == "poor",
            at_top=higher is None,
            at_bottom=lower is None,
            overrun=estimate is not None and not rendition.fits(estimate, top),
            room=roomy is not None if viewer.link.measured else None,
        )
        target = rendition.lower_within(estimate, top) if step > 0 else (roomy or higher) if step < 0 else None
        if target is not None:
            self.move(viewer, target)

    def set_encoder(self, encoder: EncoderSettings) -> None:
        """The session's new encoder settings: viewers below the bottom of a ladder cut short move up to it."""
        for viewer, climb in self._climbs.items():
            if viewer.pinned is not None:
                viewer.pinned = min(viewer.pinned, encoder.rungs - 1)
            rendition = climb.switch_to or viewer.rendition
            if rendition is not None and rendition != rendition.within(encoder):
                self.move(viewer, rendition.within(encoder))

    def move(self, viewer: Seat, target: Rendition) -> None:
        """`viewer` moves to `target` at its next keyframe, which is asked for."""
        self._climbs[viewer].switch_to = target
        self._stats.rung_changes += 1
        self._request_keyframe(target)

    def switch_at_keyframe(self, rendition: Rendition) -> set[Rendition]:
        """The viewers moving to `rendition` take it from its keyframe on; the renditions they leave."""
        left: set[Rendition] = set()
        for viewer, climb in self._climbs.items():
            if climb.switch_to == rendition:
                if viewer.rendition is not None:
                    left.add(viewer.rendition)
                viewer.rendition, climb.switch_to = rendition, None
        return left
