"""The viewers of one session: admission, roles, what each was sent and holds down, and the fan-out.

The audience runs on the event loop. It is the only writer of per-viewer delivery state: which cursor
and which source state each viewer was sent, which keys each holds down in the guest (released for it when it leaves).

A viewer that joins is replayed the packets since the last keyframe (the keyframe and the P-frames
that refined it), so it starts at once and as sharp as the others, instead of from a new IDR of the
same picture, which the rate control would have to squeeze into a drained budget. The replay is
paced (REPLAY_SPEED times the session's bitrate): sent at once, a second of video would overflow the
viewer's socket buffers and arrive as loss.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import NamedTuple, TypeVar

import av

from vgpustream.audience.ladder import RungPolicy
from vgpustream.audience.seat import Seat, SeatCallbacks
from vgpustream.capture.cursor import cursor_key, cursor_message, png_data_url
from vgpustream.capture.pipeline import Encoded
from vgpustream.capture.stats import GLASS_TO_GLASS_BUCKETS, Histogram
from vgpustream.control.audit import ViewerAudit
from vgpustream.control.auth import Grant
from vgpustream.control.roles import OPERATOR
from vgpustream.errors import Full, NotFound
from vgpustream.input.clipboard import (
    Assembly,
    ClipboardStats,
    GuestClipboard,
    InvalidClipboard,
    check_text,
    is_clipboard_message,
    messages,
    parse_part,
)
from vgpustream.input.events import DelayReport, InvalidInput, KeyEvent, ResizeEvent, parse_input
from vgpustream.input.microphone import (
    Microphone,
    MicrophoneIn,
    MicrophoneRefused,
    is_microphone_message,
    outcome,
    parse_request,
)
from vgpustream.media.encoder import EncoderSettings
from vgpustream.media.renditions import Rendition, pinned_rung
from vgpustream.ratelimit import TokenBucket
from vgpustream.settings import ViewerRules
from vgpustream.sources.base import Cursor, InputSink, SourceState

S = TypeVar("S", bound=Seat)

REPLAY_LIMIT = 120
"""The most packets a joining viewer is replayed (a still picture's keyframe and its refinements fit, at
up to 60 fps); past that it waits for a new keyframe instead. Paced, the replay never fills its queue."""
REPLAY_SPEED = 3
"""A replay goes out at this many times the session's bitrate."""
JOIN_MAX_AGE = 0.3
"""Seconds: a joiner is replayed the packets since the keyframe only where none of their pictures was
superseded longer ago than this (see JoinReplay)."""
GONE_GRACE_S = 60.0
"""How long a viewer that left is remembered as having been here (a late DELETE of it is no error)."""
GONE_LIMIT = 256
"""The most viewers remembered as gone; the oldest are forgotten first."""
VIEWER_KEYFRAME_INTERVAL = 2.0
"""Seconds between two keyframe requests of one viewer that are passed on to the encoder."""


@dataclass
class AudienceStats:
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


@dataclass
class _Delivery:
    """What the audience keeps for one viewer."""

    messages: TokenBucket
    """The data-channel messages the viewer may still send (a viewer that empties it is disconnected)."""
    expiry: asyncio.TimerHandle | None = None
    """Ends what the viewer's token allows when the token expires (None for tokens that do not)."""

    attached: bool = False
    """Whether the viewer gets the fan-out (from when it is connected)."""
    backlog: list[av.Packet] | None = None
    """While the viewer is being replayed the recent packets: those still to send it, live ones last."""
    replaying: asyncio.Task[None] | None = None
    cursor_shown: object = None
    """What the last cursor message this viewer got said (position, image, composited)."""
    cursor_serial: int | None = None
    """The serial of the cursor image this viewer was last sent."""
    keys_down: set[str] = field(default_factory=set)
    """Keys this viewer holds down in the guest."""
    state_shown: DisplayState | None = None
    """The session's state this viewer was last told."""
    keyframe_asked_at: float = -float("inf")
    """When (monotonic) this viewer's last keyframe request that was passed on came."""
    has_typed: bool = False
    """Whether input of this viewer reached the guest yet."""
    ladder: RungPolicy = field(default_factory=RungPolicy)
    switch_to: Rendition | None = None
    """The rendition the viewer moves to at its next keyframe (another rung of its codec)."""
    clipboard: Assembly = field(default_factory=Assembly)
    """The clipboard text this viewer is sending, part by part."""
    told_not_speaking: bool = False
    """Whether the viewer was told its sound was refused since it last asked for the microphone (told once)."""


class Audience:
    """Admits viewers up to `max_viewers`, routes their input to `sink`, and publishes packets to them."""

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
        self.max_viewers = max_viewers
        self.sound = sound
        """Whether the source can have sound: viewers whose offers take audio get an audio track."""
        self.encoder = encoder
        """The session's encoder settings: its bitrate paces replays; its ladder bounds the viewers' rungs."""
        self.stats = AudienceStats()
        self.clipboard_stats = ClipboardStats()
        self.microphone = Microphone(microphone)
        """Which viewer speaks into the guest, one at a time."""
        self.glass_to_glass = Histogram(GLASS_TO_GLASS_BUCKETS)
        """The delays (seconds) from capture to a browser's screen that the viewers reported."""
        self._clipboard = clipboard
        if clipboard is not None:
            clipboard.listener = self.publish_clipboard
        self._rules = rules
        self._sink = sink
        self._resize = resize
        """Where control viewers' resize requests go (the session's Resizer)."""
        self._request_keyframe = request_keyframe
        self._viewers: dict[str, Seat] = {}
        self._seats: dict[Seat, _Delivery] = {}
        self._gone: OrderedDict[str, float] = OrderedDict()
        """The ids of viewers that left, with when (monotonic), oldest first."""
        self._cursor_image: tuple[int, str] | None = None
        self._state: DisplayState | None = None
        """The session's state the capture loop last showed (see `show_state`), told to each viewer that attaches."""
        self.audit: ViewerAudit | None = None
        """The audit trail of the session's viewers: told when one leaves and of its first input."""
        self._since_keyframe: dict[Rendition, JoinReplay] = {}
        """Of each rendition: the last keyframe and the packets after it, for joiners."""
        self._callbacks = SeatCallbacks(
            request_keyframe=self._on_overflow,
            viewer_asks_keyframe=self._on_keyframe_request,
            attach=self._attach,
            closed=self._forget,
            input=self._on_input,
            link_judged=self._on_link,
            microphone=self._on_microphone_sound,
        )

    def __iter__(self) -> Iterator[Seat]:
        return iter(list(self._viewers.values()))

    def __len__(self) -> int:
        return len(self._viewers)

    def admit(self, grant: Grant, seat: Callable[[SeatCallbacks, Grant, ViewerRules], S], quality: str = "auto") -> S:
        """A viewer for this session (not yet connected) with what `grant` allows, made by `seat` (its
        transport's constructor), on the rung `quality` asks for (vgpustream.media.renditions.QUALITIES; auto: the
        ladder's choice); Full when there is no room."""
        pinned = pinned_rung(quality, self.encoder)
        self._check_room(grant)
        if not self._viewers:
            self._request_keyframe(None)  # a capture loop nobody watched wakes now (and starts with an IDR)
        viewer = seat(self._callbacks, grant, self._rules)
        viewer.pinned = pinned
        if viewer.rendition is not None and pinned is not None:  # a WebRTC viewer's comes with its offer
            viewer.rendition = replace(viewer.rendition, rung=pinned)
        self._viewers[viewer.id] = viewer
        seat = self._seats[viewer] = _Delivery(TokenBucket(self._rules.input_rate, self._rules.input_burst))
        if grant.expires_at is not None:
            delay = max(0.0, grant.expires_at - time.time())
            seat.expiry = asyncio.get_running_loop().call_later(delay, self._token_expired, viewer)
        return viewer

    def _check_room(self, grant: Grant) -> None:
        """Full unless the session has a seat for a viewer of `grant`: one of the session's, not the
        operator's (ViewerRules.operator_seats) unless the grant is the operator's, and within its token's own limit."""
        if len(self._viewers) >= self.max_viewers:
            raise Full(f"session has its maximum of {self.max_viewers} viewers")
        if grant.role == OPERATOR:
            return
        people = sum(viewer.role != OPERATOR for viewer in self._viewers.values())
        if people >= max(1, self.max_viewers - self._rules.operator_seats):
            raise Full("the session's last seat is kept for the operator")
        if grant.token_id is None:
            return
        seats = grant.max_viewers or self._rules.token_viewers
        if sum(viewer.token_id == grant.token_id for viewer in self._viewers.values()) >= seats:
            raise Full(f"this token has its maximum of {seats} viewers")

    def _token_expired(self, viewer: Seat) -> None:
        """The viewer's token expired: it is disconnected, or (--on-token-expiry view) it only watches from now
        on; either way it is told why."""
        seat = self._seats.get(viewer)
        if seat is None:
            return
        seat.expiry = None
        if self._rules.on_token_expiry == "disconnect":
            viewer.dismiss("token_expired", "the link's time is up")
            return
        viewer.role, viewer.clipboard, viewer.may_speak = "view", "none", False
        self._release_keys(seat)
        self._stop_microphone(viewer, "the link's time is up", tell=True)
        viewer.send_message(
            json.dumps({"type": "expired", "message": "the link's time is up: the VM takes no more input from it"})
        )

    def viewer(self, viewer_id: str) -> Seat:
        try:
            return self._viewers[viewer_id]
        except KeyError:
            raise NotFound("no such viewer") from None

    def has_left(self, viewer_id: str) -> bool:
        """Whether `viewer_id` was a viewer of this session that left within the last GONE_GRACE_S."""
        left_at = self._gone.get(viewer_id)
        return left_at is not None and time.monotonic() - left_at < GONE_GRACE_S

    def _on_keyframe_request(self, viewer: Seat) -> None:
        """A viewer's RTCP PLI/FIR: passed on at most once per VIEWER_KEYFRAME_INTERVAL for that viewer.

        A viewer on a lossy link asks again and again, and every IDR costs every viewer of the session
        (a burst of bits, a softer picture after it); the others' requests still go through.
        """
        seat = self._seats.get(viewer)
        if seat is None:
            return
        now = time.monotonic()
        if now - seat.keyframe_asked_at < VIEWER_KEYFRAME_INTERVAL:
            self.stats.keyframe_requests_limited += 1
            return
        seat.keyframe_asked_at = now
        self._request_keyframe(viewer.rendition)

    def _on_link(self, viewer: Seat) -> None:
        """A new verdict on a viewer's link: it may move down or up a rung (vgpustream.audience.ladder)."""
        seat = self._seats.get(viewer)
        if seat is None or viewer.rendition is None or viewer.link is None or seat.switch_to is not None:
            return
        if viewer.pinned is not None:  # the viewer asked for its rung (quality=)
            return
        rendition, estimate, top = viewer.rendition, viewer.link.estimate_bps, self.encoder
        lower, higher = rendition.lower(top), rendition.higher()
        roomy = rendition.higher_within(estimate, top) if estimate is not None and viewer.link.measured else None
        step = seat.ladder.judge(
            time.monotonic(),
            viewer.link.quality == "poor",
            at_top=higher is None,
            at_bottom=lower is None,
            overrun=estimate is not None and not rendition.fits(estimate, top),
            room=roomy is not None if viewer.link.measured else None,
        )
        target = rendition.lower_within(estimate, top) if step > 0 else (roomy or higher) if step < 0 else None
        if target is not None:
            self._move(seat, target)

    def set_encoder(self, encoder: EncoderSettings) -> None:
        """The session's new encoder settings; viewers below the bottom of a ladder cut short move up to it."""
        self.encoder = encoder
        for viewer, seat in self._seats.items():
            if viewer.pinned is not None:
                viewer.pinned = min(viewer.pinned, encoder.rungs - 1)
            rendition = seat.switch_to or viewer.rendition
            if rendition is not None and rendition != rendition.within(encoder):
                self._move(seat, rendition.within(encoder))

    def _move(self, seat: _Delivery, target: Rendition) -> None:
        """The viewer of `seat` moves to `target` at its next keyframe, which is asked for."""
        seat.switch_to = target
        self.stats.rung_changes += 1
        self._request_keyframe(target)

    def _switch_at_keyframe(self, rendition: Rendition) -> None:
        """The viewers moving to `rendition` take it from its keyframe on."""
        left: set[Rendition] = set()
        for viewer, seat in self._seats.items():
            if seat.switch_to == rendition:
                if viewer.rendition is not None:
                    left.add(viewer.rendition)
                viewer.rendition, seat.switch_to = rendition, None
        for old in left:
            self._left(old)

    def _left(self, rendition: Rendition) -> None:
        """A viewer no longer takes `rendition`: where none does, its replay goes (its encoder stops, and one
        that starts again later must not replay a picture from before)."""
        if rendition not in self.renditions():
            self._since_keyframe.pop(rendition, None)

    def _on_overflow(self, viewer: Seat) -> None:
        """A viewer's queue overflowed: it skips to the next keyframe of its rendition, which is asked for."""
        self._request_keyframe(viewer.rendition)

    async def close_viewers(self, token_id: str | None = None, reason: str | None = None) -> None:
        """Disconnect every viewer, or those that came in with token `token_id`, telling them `reason` where
        given; waits for all of it."""
        leaving = [v for v in self._viewers.values() if token_id is None or v.token_id == token_id]
        await asyncio.gather(*(viewer.close(reason) for viewer in leaving))

    @property
    def dropped_packets(self) -> int:
        return sum(viewer.queue.dropped for viewer in self._viewers.values())

    def renditions(self) -> set[Rendition]:
        """The renditions the session must encode: those of its viewers that take the video (from a WHEP
        offer on, so that the first picture is encoded while the viewer connects), and those they move to."""
        taken = {viewer.rendition for viewer in self._viewers.values() if viewer.rendition is not None}
        return taken | {seat.switch_to for seat in self._seats.values() if seat.switch_to is not None}

    def seats(self, rendition: Rendition) -> int:
        """How many viewers take `rendition`."""
        return sum(viewer.rendition == rendition for viewer in self._viewers.values())

    def composites_cursor(self) -> bool:
        """Whether the cursor is drawn into the picture: some viewer has no channel to get it on."""
        return any(not viewer.input_channel for viewer, seat in self._seats.items() if seat.attached)

    def publish(self, encoded: dict[Rendition, Encoded], cursor: Cursor | None) -> None:
        """Queue one step's packets of each rendition for every attached viewer of it, then tell them all
        where the cursor is. A viewer moving to another rung takes it from its keyframe on, and nothing more
        of its old rung: the same frame of both (one RTP timestamp) would be one broken frame to it."""
        for rendition, made in encoded.items():
            self._since_keyframe.setdefault(rendition, JoinReplay()).add(made)
            if any(packet.is_keyframe for packet in made.packets):
                self._switch_at_keyframe(rendition)
        for rendition, made in encoded.items():
            attached = [
                viewer for viewer, seat in self._seats.items() if seat.attached and viewer.rendition == rendition
            ]
            for packet in made.packets:
                for viewer in attached:
                    backlog = self._seats[viewer].backlog
                    if backlog is None:
                        viewer.queue.push(packet)
                    else:
                        backlog.append(packet)
        if cursor is not None:
            self._send_cursor(cursor)

    def listened(self) -> bool:
        """Whether a connected viewer takes the sound (if none does, nothing is encoded)."""
        return any(seat.attached and viewer.sound_queue is not None for viewer, seat in self._seats.items())

    def publish_sound(self, packets: list[av.Packet]) -> None:
        """Queue the session's Opus packets for every connected viewer that takes the sound."""
        for viewer, seat in self._seats.items():
            if seat.attached and viewer.sound_queue is not None:
                for packet in packets:
                    viewer.sound_queue.push(packet)

    def publish_clipboard(self, text: str) -> None:
        """The guest copied `text`: send it to every connected viewer that may read the clipboard."""
        self.clipboard_stats.clipboard_from_guest += 1
        parts = messages(text)
        readers = [viewer for viewer, seat in self._seats.items() if seat.attached and viewer.clipboard != "none"]
        for viewer in readers:
            for part in parts:
                viewer.send_message(part)
        if readers and self.audit is not None:
            self.audit.clipboard_from_guest([viewer.id for viewer in readers], len(text))

    def _on_clipboard(self, viewer: Seat, message: str | bytes) -> None:
        """A part of a viewer's clipboard text; a whole text goes to the guest if the viewer may write it. The
        viewer is told whether the guest got it, or why not: {"type": "clipboard_outcome", "accepted", "message"}."""
        seat = self._seats.get(viewer)  # None once the viewer has left
        try:
            if self._clipboard is None or not self._clipboard.available:
                raise InvalidClipboard("the VM has no clipboard to share")
            if seat is None or not viewer.can_control or viewer.clipboard != "readwrite":
                raise InvalidClipboard("this link may not write the VM's clipboard")
            text = seat.clipboard.add(*parse_part(message))
            if text is None:
                return
            check_text(text)
        except InvalidInput as exc:  # InvalidClipboard too
            self.clipboard_stats.clipboard_refused += 1
            viewer.send_message(clipboard_outcome(str(exc)))
            return
        viewer.send_message(clipboard_outcome(None))
        self.clipboard_stats.clipboard_to_guest += 1
        self._clipboard.write(text)
        if self.audit is not None:
            self.audit.clipboard_to_guest(viewer.id, len(text))

    def _on_microphone_request(self, viewer: Seat, seat: _Delivery, message: str | bytes) -> None:
        """A viewer asks for the microphone, or gives it back; it is told what became of it (or why not)."""
        try:
            try:
                request = parse_request(message)
            except MicrophoneRefused as exc:
                raise self.microphone.refuse(str(exc)) from None
            if request.on and not viewer.may_speak:
                raise self.microphone.refuse("this link may not use the microphone")
            if not request.on:
                self._stop_microphone(viewer, "turned off")
                viewer.send_message(outcome(False))
                return
            started = self.microphone.speaker != viewer.id
            self.microphone.start(viewer.id, request)
        except MicrophoneRefused as exc:
            viewer.send_message(outcome(self.microphone.speaker == viewer.id, str(exc)))
            return
        seat.told_not_speaking = False
        if started and self.audit is not None:
            self.audit.microphone_started(viewer.id)
        viewer.send_message(outcome(True))

    def _on_microphone_sound(self, viewer: Seat, sound: av.AudioFrame | bytes) -> None:
        """Sound from a viewer's microphone for the guest; refused (and counted) unless the viewer holds the
        microphone and its sound stays within bounds: a speaker past them loses the microphone, and is told why."""
        seat = self._seats.get(viewer)
        if seat is None or viewer.dismissed is not None:
            return
        try:
            if isinstance(sound, bytes):
                self.microphone.packet(viewer.id, sound)
            else:
                self.microphone.frame(viewer.id, sound)
        except MicrophoneRefused as exc:
            if self.microphone.speaker == viewer.id:
                self._stop_microphone(viewer, str(exc))
            elif seat.told_not_speaking:
                return
            seat.told_not_speaking = True
            viewer.send_message(outcome(False, str(exc)))

    def _stop_microphone(self, viewer: Seat, reason: str, tell: bool = False) -> None:
        """The viewer's microphone goes off, if it was on (audited); `tell`: the viewer is told why."""
        if not self.microphone.stop(viewer.id):
            return
        if self.audit is not None:
            self.audit.microphone_stopped(viewer.id, reason)
        if tell:
            viewer.send_message(outcome(False, reason))

    def _send_cursor(self, cursor: Cursor) -> None:
        """Tell viewers on a data channel where the cursor is, with its image when they lack it."""
        composited = self.composites_cursor()
        shown = (cursor_key(cursor), composited)
        for viewer, seat in self._seats.items():
            if not seat.attached or seat.cursor_shown == shown:
                continue
            with_image = cursor.image is not None and seat.cursor_serial != cursor.serial
            image = self._cursor_png(cursor) if with_image else None
            if not viewer.send_message(cursor_message(cursor, image, composited)):
                continue  # its channel is not open yet: try again next frame
            seat.cursor_shown = shown
            if with_image:
                seat.cursor_serial = cursor.serial

    def show_state(
        self, state: SourceState, error: str | None, resizable: bool = False, name: str | None = None
    ) -> None:
        """Tell each viewer on a data channel the source's state and last error (and whether it takes
        resize requests, has a clipboard, and the session's name), when it was told otherwise.

        View-only viewers are told too. Called after every capture step, so a viewer whose channel opens
        late is told at the next one.
        """
        relative = self._sink is not None and self._sink.relative_pointer
        clipboard = self._clipboard is not None and self._clipboard.available
        microphone = self.microphone.available
        self._state = DisplayState(state, error, resizable, relative, clipboard, name, microphone)
        for viewer, seat in self._seats.items():
            self._tell_state(viewer, seat)

    def _tell_state(self, viewer: Seat, seat: _Delivery) -> None:
        if (
            self._state is not None
            and seat.state_shown != self._state
            and viewer.send_message(self._state.message(viewer.may_speak))
        ):
            seat.state_shown = self._state

    def _cursor_png(self, cursor: Cursor) -> str:
        if self._cursor_image is None or self._cursor_image[0] != cursor.serial:
            self._cursor_image = (cursor.serial, png_data_url(cursor.image))
        return self._cursor_image[1]

    def _attach(self, viewer: Seat) -> None:
        seat = self._seats[viewer]
        seat.attached = True
        self._tell_state(viewer, seat)  # before its first frame, which may come before the next capture step
        if viewer.rendition is None:
            return  # its offer took no video the session makes: it gets messages and sound only
        kept = self._since_keyframe.get(viewer.rendition)
        if kept is None or not kept.current(time.time()):
            self.stats.joins_on_a_keyframe += 1
            self._request_keyframe(viewer.rendition)  # its queue waits for it: it starts from the present
            return
        self.stats.joins_replayed += 1
        seat.backlog = replay(kept.packets)
        seat.replaying = asyncio.create_task(self._replay(viewer, seat), name=f"replay-{viewer.id}")

    async def _replay(self, viewer: Seat, seat: _Delivery) -> None:
        """Send the viewer its backlog, paced, then hand it over to the live fan-out."""
        assert seat.backlog is not None
        while seat.backlog:
            packet = seat.backlog.pop(0)
            viewer.queue.push(packet)
            await asyncio.sleep(packet.size * 8 / (self.encoder.bitrate * REPLAY_SPEED))
        seat.backlog = None

    def _forget(self, viewer: Seat) -> None:
        self._viewers.pop(viewer.id, None)
        self._remember_gone(viewer.id)
        seat = self._seats.pop(viewer, None)
        if seat is None:
            return
        if self.audit is not None:
            self.audit.left(viewer.id)
        if seat.replaying is not None:
            seat.replaying.cancel()  # it only feeds the viewer's queue, which is closed with it
        if viewer.rendition is not None:
            self._left(viewer.rendition)
        if seat.expiry is not None:
            seat.expiry.cancel()
        self._release_keys(seat)
        self._stop_microphone(viewer, "the viewer left")

    def _release_keys(self, seat: _Delivery) -> None:
        """A viewer that leaves (or loses control) mid-keystroke must not leave the key stuck down in the guest."""
        if self._sink is not None:
            for code in sorted(seat.keys_down):
                self._sink.send(KeyEvent(code=code, down=False))
        seat.keys_down.clear()

    def _remember_gone(self, viewer_id: str) -> None:
        now = time.monotonic()
        self._gone[viewer_id] = now
        while self._gone and (len(self._gone) > GONE_LIMIT or now - next(iter(self._gone.values())) >= GONE_GRACE_S):
            self._gone.popitem(last=False)

    def _on_input(self, viewer: Seat, message: str | bytes) -> None:
        seat = self._seats.get(viewer)  # None once the viewer has left
        if seat is None or viewer.dismissed is not None:
            return
        if not seat.messages.take():
            self.stats.viewers_flooding += 1
            viewer.dismiss("flood", f"more than {self._rules.input_rate:g} messages a second")
            return
        if is_clipboard_message(message):
            self._on_clipboard(viewer, message)
            return
        if is_microphone_message(message):
            self._on_microphone_request(viewer, seat, message)
            return
        try:
            event = parse_input(message)
        except InvalidInput:
            self.stats.input_invalid += 1
            return
        if isinstance(event, DelayReport):  # any viewer may tell what it sees, whatever its role
            for ms in event.ms:
                self.glass_to_glass.observe(ms / 1000)
            return
        target = self._resize if isinstance(event, ResizeEvent) else self._sink
        if not viewer.can_control or target is None:
            self.stats.input_refused += 1
            return
        self.stats.input_events += 1
        if not seat.has_typed and self.audit is not None:
            self.audit.input_started(viewer.id)
        seat.has_typed = True
        if isinstance(event, ResizeEvent):
            assert self._resize is not None
            self._resize(event)
            return
        if isinstance(event, KeyEvent):
            (seat.keys_down.add if event.down else seat.keys_down.discard)(event.code)
        self._sink.send(event)


class JoinReplay:
    """A rendition's last keyframe and the packets after it (at most REPLAY_LIMIT), which a joining viewer is
    sent so that it starts at once, and whether they show the present.

    A browser shows each replayed frame as it decodes it, so a replay of a picture that changed after its
    keyframe plays the past back in fast motion (measured at 1080p30, moving: frames up to 1.15 s old in the
    first 2 s after a join). It is used only while nothing in it was superseded more than JOIN_MAX_AGE ago:
    the picture has not changed since the keyframe (a still screen, or one only being refined: the replay
    makes it sharp at once), or it first changed within JOIN_MAX_AGE. Otherwise the joiner waits for a
    fresh keyframe, which the keyframe policy shares among the joiners of half a second.
    """

    def __init__(self) -> None:
        self.packets: list[av.Packet] = []
        self._changed_at: float | None = None
        """The capture time of the first change after the keyframe (None while its picture stands)."""

    def add(self, encoded: Encoded) -> None:
        for packet in encoded.packets:
            if packet.is_keyframe:
                self.packets, self._changed_at = [packet], None
            elif 0 < len(self.packets) < REPLAY_LIMIT:
                self.packets.append(packet)
                if encoded.changed and self._changed_at is None:
                    self._changed_at = packet.opaque
            else:
                self.packets = []  # too long to replay (or no keyframe yet): joiners ask for one

    def current(self, now: float) -> bool:
        """Whether a joiner may be replayed the packets at wall-clock time `now`."""
        return bool(self.packets) and (self._changed_at is None or now - self._changed_at <= JOIN_MAX_AGE)


def clipboard_outcome(refusal: str | None) -> str:
    """The input channel's message telling a viewer whether the guest took its clipboard text (refusal None)."""
    return json.dumps({"type": "clipboard_outcome", "accepted": refusal is None, "message": refusal})


class DisplayState(NamedTuple):
    """What viewers are told of the session: its source's state and last error, whether the display can be
    resized, whether the guest's pointer is relative, whether the guest has a clipboard, and the session's name."""

    state: SourceState
    error: str | None
    resizable: bool
    relative_pointer: bool
    clipboard: bool
    name: str | None
    microphone: bool = False
    """Whether the guest takes sound in."""

    def message(self, may_speak: bool = False) -> str:
        """The input channel's message: {"type": "state", "state", "message", "resizable", "relative_pointer",
        "clipboard", "name", "microphone"}; `microphone` is true where the guest takes sound in and the viewer
        may send it its microphone (`may_speak`)."""
        told = self._asdict() | {
            "type": "state",
            "state": self.state.value,
            "message": self.error,
            "microphone": self.microphone and may_speak,
        }
        del told["error"]
        return json.dumps(told)


def replay(packets: list[av.Packet]) -> list[av.Packet]:
    """Copies of `packets` timed one RTP clock tick apart, ending at the last one's time.

    A joining viewer gets them at once: timed as they were encoded, a browser would play them out at
    their original pace and stay that far behind the live picture.
    """
    last = packets[-1].pts
    copies = []
    for age, packet in enumerate(reversed(packets)):
        copy = av.Packet(bytes(packet))
        copy.pts = copy.dts = last - age
        copy.time_base = packet.time_base
        copy.is_keyframe = packet.is_keyframe
        copies.append(copy)
    return copies[::-1]
