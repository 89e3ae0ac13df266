"""The viewers' messages to the guest (keyboard, mouse, resize requests, clipboard text, the microphone), and
the guest's clipboard back to them.

A viewer's messages are rate-limited (ViewerRules.input_rate): one that sends faster is disconnected. What a
viewer holds in the guest (keys down, the microphone) is given back when it leaves or loses control.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import av

from vgpustream.audience.seat import Seat
from vgpustream.audience.stats import AudienceStats
from vgpustream.capture.stats import GLASS_TO_GLASS_BUCKETS, Histogram
from vgpustream.control.audit import ViewerAudit
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
from vgpustream.ratelimit import TokenBucket
from vgpustream.settings import ViewerRules
from vgpustream.sources.base import InputSink


@dataclass
class _Hands:
    """What the input router keeps for one viewer."""

    messages: TokenBucket
    """The data-channel messages the viewer may still send (a viewer that empties it is disconnected)."""
    keys_down: set[str] = field(default_factory=set)
    """Keys this viewer holds down in the guest."""
    has_typed: bool = False
    """Whether input of this viewer reached the guest yet."""
    clipboard: Assembly = field(default_factory=Assembly)
    """The clipboard text this viewer is sending, part by part."""
    told_not_speaking: bool = False
    """Whether the viewer was told its sound was refused since it last asked for the microphone (told once)."""


class InputRouter:
    """Routes each viewer's messages to the guest as its role and token allow: input to `sink`, resize requests
    to `resize`, clipboard text to `clipboard`, its microphone's sound to `microphone` (one speaker at a time);
    and the guest's clipboard to the viewers that may read it."""

    def __init__(
        self,
        rules: ViewerRules,
        sink: InputSink | None,
        stats: AudienceStats,
        *,
        clipboard: GuestClipboard | None = None,
        microphone: MicrophoneIn | None = None,
        resize: Callable[[ResizeEvent], None] | None = None,
    ) -> None:
        self.clipboard_stats = ClipboardStats()
        self.microphone = Microphone(microphone)
        """Which viewer speaks into the guest, one at a time."""
        self.glass_to_glass = Histogram(GLASS_TO_GLASS_BUCKETS)
        """The delays (seconds) from capture to a browser's screen that the viewers reported."""
        self.audit: ViewerAudit | None = None
        """The audit trail of the session's viewers: told of their first input, clipboard and microphone."""
        self._rules = rules
        self._sink = sink
        self._stats = stats
        self._clipboard = clipboard
        self._resize = resize
        """Where control viewers' resize requests go (the session's Resizer)."""
        self._hands: dict[Seat, _Hands] = {}

    @property
    def relative_pointer(self) -> bool:
        """Whether the guest's pointer is relative."""
        return self._sink is not None and self._sink.relative_pointer

    @property
    def clipboard_available(self) -> bool:
        """Whether the guest has a clipboard to share."""
        return self._clipboard is not None and self._clipboard.available

    def add(self, viewer: Seat) -> None:
        """A viewer admitted: its messages are read, within the rules' rate."""
        self._hands[viewer] = _Hands(TokenBucket(self._rules.input_rate, self._rules.input_burst))

    def remove(self, viewer: Seat) -> None:
        """A viewer left: the keys it holds down are released and its microphone goes off."""
        hands = self._hands.pop(viewer, None)
        if hands is None:
            return
        self._release_keys(hands)
        self._stop_microphone(viewer, "the viewer left")

    def lose_control(self, viewer: Seat, reason: str) -> None:
        """The viewer may no longer control the guest: the keys it holds down are released and its microphone goes
        off (it is told `reason`)."""
        hands = self._hands.get(viewer)
        if hands is not None:
            self._release_keys(hands)
        self._stop_microphone(viewer, reason, tell=True)

    def on_input(self, viewer: Seat, message: str | bytes) -> None:
        """A message from the viewer's channel: input, a part of its clipboard text, a microphone request, or a
        report of the delay it sees."""
        hands = self._hands.get(viewer)  # None once the viewer has left
        if hands is None or viewer.dismissed is not None:
            return
        if not hands.messages.take():
            self._stats.viewers_flooding += 1
            viewer.dismiss("flood", f"more than {self._rules.input_rate:g} messages a second")
            return
        if is_clipboard_message(message):
            self._on_clipboard(viewer, message)
            return
        if is_microphone_message(message):
            self._on_microphone_request(viewer, hands, message)
            return
        try:
            event = parse_input(message)
        except InvalidInput:
            self._stats.input_invalid += 1
            return
        if isinstance(event, DelayReport):  # any viewer may tell what it sees, whatever its role
            for ms in event.ms:
                self.glass_to_glass.observe(ms / 1000)
            return
        target = self._resize if isinstance(event, ResizeEvent) else self._sink
        if not viewer.can_control or target is None:
            self._stats.input_refused += 1
            return
        self._stats.input_events += 1
        if not hands.has_typed and self.audit is not None:
            self.audit.input_started(viewer.id)
        hands.has_typed = True
        if isinstance(event, ResizeEvent):
            assert self._resize is not None
            self._resize(event)
            return
        if isinstance(event, KeyEvent):
            (hands.keys_down.add if event.down else hands.keys_down.discard)(event.code)
        self._sink.send(event)

    def publish_clipboard(self, text: str, viewers: Iterable[Seat]) -> None:
        """The guest copied `text`: send it to each of the connected `viewers` that may read the clipboard."""
        self.clipboard_stats.clipboard_from_guest += 1
        parts = messages(text)
        readers = [viewer for viewer in viewers if viewer.clipboard != "none"]
        for viewer in readers:
            for part in parts:
                viewer.send_message(part)
        if readers and self.audit is not None:
            self.audit.clipboard_from_guest([viewer.id for viewer in readers], len(text))

    def _on_clipboard(self, viewer: Seat, message: str | bytes) -> None:
        """A part of a viewer's clipboard text; a whole text goes to the guest if the viewer may write it. The
        viewer is told whether the guest got it, or why not: {"type": "clipboard_outcome", "accepted", "message"}."""
        hands = self._hands.get(viewer)  # None once the viewer has left
        try:
            if self._clipboard is None or not self._clipboard.available:
                raise InvalidClipboard("the VM has no clipboard to share")
            if hands is None or not viewer.can_control or viewer.clipboard != "readwrite":
                raise InvalidClipboard("this link may not write the VM's clipboard")
            text = hands.clipboard.add(*parse_part(message))
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

    def _on_microphone_request(self, viewer: Seat, hands: _Hands, message: str | bytes) -> None:
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
        hands.told_not_speaking = False
        if started and self.audit is not None:
            self.audit.microphone_started(viewer.id)
        viewer.send_message(outcome(True))

    def on_microphone_sound(self, viewer: Seat, sound: av.AudioFrame | bytes) -> None:
        """Sound from a viewer's microphone for the guest; refused (and counted) unless the viewer holds the
        microphone and its sound stays within bounds: a speaker past them loses the microphone, and is told why."""
        hands = self._hands.get(viewer)
        if hands is None or viewer.dismissed is not None:
            return
        try:
            if isinstance(sound, bytes):
                self.microphone.packet(viewer.id, sound)
            else:
                self.microphone.frame(viewer.id, sound)
        except MicrophoneRefused as exc:
            if self.microphone.speaker == viewer.id:
                self._stop_microphone(viewer, str(exc))
            elif hands.told_not_speaking:
                return
            hands.told_not_speaking = True
            viewer.send_message(outcome(False, str(exc)))

    def _stop_microphone(self, viewer: Seat, reason: str, tell: bool = False) -> None:
        """The viewer's microphone goes off, if it was on (audited); `tell`: the viewer is told why."""
        if not self.microphone.stop(viewer.id):
            return
        if self.audit is not None:
            self.audit.microphone_stopped(viewer.id, reason)
        if tell:
            viewer.send_message(outcome(False, reason))

    def _release_keys(self, hands: _Hands) -> None:
        """A viewer that leaves (or loses control) mid-keystroke must not leave the key stuck down in the guest."""
        if self._sink is not None:
            for code in sorted(hands.keys_down):
                self._sink.send(KeyEvent(code=code, down=False))
        hands.keys_down.clear()


def clipboard_outcome(refusal: str | None) -> str:
    """The input channel's message telling a viewer whether the guest took its clipboard text (refusal None)."""
    return json.dumps({"type": "clipboard_outcome", "accepted": refusal is None, "message": refusal})
