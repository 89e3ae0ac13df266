"""The viewers of one session, as the session sees them: one façade over the audience's parts.

Each part does one job and keeps its own per-viewer state, added when a viewer is admitted and removed
when it leaves: who may sit (Admission), the packets to the viewers' queues (Publisher), their moves
between rungs (RungSwitcher), what they are told of the session (Notices), and their messages to the guest
(InputRouter). The audience wires a viewer's seat to them, and runs on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TypeVar

import av

from vgpustream.audience.admission import Admission
from vgpustream.audience.notices import DisplayState, Notices
from vgpustream.audience.publisher import Publisher
from vgpustream.audience.routing import InputRouter
from vgpustream.audience.rungs import RungSwitcher
from vgpustream.audience.seat import Seat, SeatCallbacks
from vgpustream.audience.stats import AudienceStats
from vgpustream.capture.pipeline import Encoded
from vgpustream.capture.stats import Histogram
from vgpustream.control.audit import ViewerAudit
from vgpustream.control.auth import Grant
from vgpustream.input.clipboard import ClipboardStats, GuestClipboard
from vgpustream.input.events import ResizeEvent
from vgpustream.input.microphone import Microphone, MicrophoneIn
from vgpustream.media.encoder import EncoderSettings
from vgpustream.media.renditions import Rendition, pinned_rung
from vgpustream.settings import ViewerRules
from vgpustream.sources.base import Cursor, InputSink, SourceState

S = TypeVar("S", bound=Seat)


class Audience:
    """Admits viewers up to `max_viewers`, routes their input to `sink`, and publishes packets to them: the
    session's one way to its viewers, each job done by a part of its own."""

    def __init__(
        self,
        max_viewers: int,
        rules: ViewerRules,
        sink: InputSink | None,
        request_keyframe: Callable[[Rendition | None], None],
        encoder: EncoderSettings,
        *,
        sound: bool = False,
        clipboard: GuestClipboard | None = None,
        microphone: MicrophoneIn | None = None,
        resize: Callable[[ResizeEvent], None] | None = None,
    ) -> None:
        self.sound = sound
        """Whether the source can have sound: viewers whose offers take audio get an audio track."""
        self.encoder = encoder
        """The session's encoder settings: its bitrate paces replays; its ladder bounds the viewers' rungs."""
        self.stats = AudienceStats()
        self._rules = rules
        self._request_keyframe = request_keyframe
        self._router = InputRouter(rules, sink, self.stats, clipboard=clipboard, microphone=microphone, resize=resize)
        self._admission = Admission(max_viewers, rules, self._router.lose_control)
        self._publisher = Publisher(request_keyframe, lambda: self.encoder.bitrate, self.stats)
        self._rungs = RungSwitcher(request_keyframe, self.stats)
        self._notices = Notices()
        if clipboard is not None:
            clipboard.listener = self.publish_clipboard
        self._callbacks = SeatCallbacks(
            request_keyframe=self._publisher.on_overflow,
            viewer_asks_keyframe=self._publisher.on_keyframe_request,
            attach=self._attach,
            closed=self._forget,
            input=self._router.on_input,
            link_judged=self._on_link,
            microphone=self._router.on_microphone_sound,
        )

    @property
    def max_viewers(self) -> int:
        return self._admission.max_viewers

    @max_viewers.setter
    def max_viewers(self, value: int) -> None:
        self._admission.max_viewers = value

    @property
    def audit(self) -> ViewerAudit | None:
        """The audit trail of the session's viewers: told when one leaves, of its first input, clipboard and
        microphone."""
        return self._router.audit

    @audit.setter
    def audit(self, audit: ViewerAudit | None) -> None:
        self._router.audit = audit

    @property
    def microphone(self) -> Microphone:
        """Which viewer speaks into the guest, one at a time."""
        return self._router.microphone

    @property
    def clipboard_stats(self) -> ClipboardStats:
        return self._router.clipboard_stats

    @property
    def glass_to_glass(self) -> Histogram:
        """The delays (seconds) from capture to a browser's screen that the viewers reported."""
        return self._router.glass_to_glass

    def __iter__(self) -> Iterator[Seat]:
        return iter(self._admission)

    def __len__(self) -> int:
        return len(self._admission)

    def admit(self, grant: Grant, seat: Callable[[SeatCallbacks, Grant, ViewerRules], S], quality: str = "auto") -> S:
        """A viewer for this session (not yet connected) with what `grant` allows, made by `seat` (its
        transport's constructor), on the rung `quality` asks for (vgpustream.media.renditions.QUALITIES; auto: the
        ladder's choice); Full when there is no room."""
        pinned = pinned_rung(quality, self.encoder)
        self._admission.check_room(grant)
        if not len(self._admission):
            self._request_keyframe(None)  # a capture loop nobody watched wakes now (and starts with an IDR)
        viewer = seat(self._callbacks, grant, self._rules)
        viewer.pinned = pinned
        if viewer.rendition is not None and pinned is not None:  # a WebRTC viewer's comes with its offer
            viewer.rendition = replace(viewer.rendition, rung=pinned)
        self._router.add(viewer)
        self._publisher.add(viewer)
        self._rungs.add(viewer)
        self._notices.add(viewer)
        self._admission.seat(viewer, grant)
        return viewer

    def viewer(self, viewer_id: str) -> Seat:
        return self._admission.viewer(viewer_id)

    def has_left(self, viewer_id: str) -> bool:
        """Whether `viewer_id` was a viewer of this session that left within the last GONE_GRACE_S
        (vgpustream.audience.admission)."""
        return self._admission.has_left(viewer_id)

    def _attach(self, viewer: Seat) -> None:
        """The viewer is connected: it is told the session's state before its first frame (which may come before
        the next capture step), and joins the fan-out."""
        self._notices.tell_state(viewer)
        self._publisher.attach(viewer)

    def _forget(self, viewer: Seat) -> None:
        """The viewer left: each part lets go of it, and a rendition nobody takes any more loses its replay."""
        if not self._admission.leave(viewer):
            return
        if self.audit is not None:
            self.audit.left(viewer.id)
        self._publisher.remove(viewer)
        self._rungs.remove(viewer)
        self._notices.remove(viewer)
        if viewer.rendition is not None:
            self._left(viewer.rendition)
        self._router.remove(viewer)

    def _on_link(self, viewer: Seat) -> None:
        """A new verdict on a viewer's link: it may move down or up a rung (vgpustream.audience.rungs)."""
        self._rungs.on_link(viewer, self.encoder)

    def set_encoder(self, encoder: EncoderSettings) -> None:
        """The session's new encoder settings; viewers below the bottom of a ladder cut short move up to it."""
        self.encoder = encoder
        self._rungs.set_encoder(encoder)

    def _left(self, rendition: Rendition) -> None:
        """A viewer no longer takes `rendition`: where none does, its replay goes."""
        if rendition not in self.renditions():
            self._publisher.drop_replay(rendition)

    async def close_viewers(self, token_id: str | None = None, reason: str | None = None) -> None:
        """Disconnect every viewer, or those that came in with token `token_id`, telling them `reason` where
        given; waits for all of it."""
        leaving = [v for v in self._admission if token_id is None or v.token_id == token_id]
        await asyncio.gather(*(viewer.close(reason) for viewer in leaving))

    @property
    def dropped_packets(self) -> int:
        return sum(viewer.queue.dropped for viewer in self._admission)

    def renditions(self) -> set[Rendition]:
        """The renditions the session must encode: those of its viewers that take the video (from a WHEP
        offer on, so that the first picture is encoded while the viewer connects), and those they move to."""
        taken = {viewer.rendition for viewer in self._admission if viewer.rendition is not None}
        return taken | self._rungs.moving_to()

    def seats(self, rendition: Rendition) -> int:
        """How many viewers take `rendition`."""
        return sum(viewer.rendition == rendition for viewer in self._admission)

    def composites_cursor(self) -> bool:
        """Whether the cursor is drawn into the picture: some viewer has no channel to get it on."""
        return any(not viewer.input_channel for viewer in self._publisher.attached())

    def publish(self, encoded: dict[Rendition, Encoded], cursor: Cursor | None) -> None:
        """Queue one step's packets of each rendition for every attached viewer of it, then tell them all
        where the cursor is. A viewer moving to another rung takes it from its keyframe on, and nothing more
        of its old rung: the same frame of both (one RTP timestamp) would be one broken frame to it."""
        for rendition, made in encoded.items():
            self._publisher.keep(rendition, made)
            if any(packet.is_keyframe for packet in made.packets):
                for old in self._rungs.switch_at_keyframe(rendition):
                    self._left(old)
        self._publisher.publish(encoded)
        if cursor is not None:
            self._notices.send_cursor(cursor, self._publisher.attached(), self.composites_cursor())

    def listened(self) -> bool:
        """Whether a connected viewer takes the sound (if none does, nothing is encoded)."""
        return self._publisher.listened()

    def publish_sound(self, packets: list[av.Packet]) -> None:
        """Queue the session's Opus packets for every connected viewer that takes the sound."""
        self._publisher.publish_sound(packets)

    def publish_clipboard(self, text: str) -> None:
        """The guest copied `text`: send it to every connected viewer that may read the clipboard."""
        self._router.publish_clipboard(text, self._publisher.attached())

    def show_state(
        self, state: SourceState, error: str | None, resizable: bool = False, name: str | None = None
    ) -> None:
        """Tell each viewer on a data channel the source's state and last error (and whether it takes
        resize requests, has a clipboard, and the session's name), when it was told otherwise.

        View-only viewers are told too. Called after every capture step, so a viewer whose channel opens
        late is told at the next one.
        """
        router = self._router
        self._notices.show_state(
            DisplayState(
                state,
                error,
                resizable,
                router.relative_pointer,
                router.clipboard_available,
                name,
                router.microphone.available,
            )
        )
