"""What the viewers are told of the session on their channels besides the video: its state and the cursor."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from vgpustream.audience.seat import Seat
from vgpustream.capture.cursor import cursor_key, cursor_message, png_data_url
from vgpustream.sources.base import Cursor, SourceState


@dataclass
class _Told:
    """What one viewer was last told."""

    cursor_shown: object = None
    """What the last cursor message this viewer got said (position, image, composited)."""
    cursor_serial: int | None = None
    """The serial of the cursor image this viewer was last sent."""
    state_shown: DisplayState | None = None
    """The session's state this viewer was last told."""


class Notices:
    """Tells each viewer the session's state and where the cursor is (with its image when it lacks it), each time
    it changed for that viewer, and remembers what each was told."""

    def __init__(self) -> None:
        self._told: dict[Seat, _Told] = {}
        self._state: DisplayState | None = None
        """The session's state the capture loop last showed (see `show_state`), told to each viewer that attaches."""
        self._cursor_image: tuple[int, str] | None = None

    def add(self, viewer: Seat) -> None:
        self._told[viewer] = _Told()

    def remove(self, viewer: Seat) -> None:
        self._told.pop(viewer, None)

    def show_state(self, state: DisplayState) -> None:
        """Tell every viewer on a data channel `state`, when it was told otherwise (a viewer whose channel is not
        open yet is told at the next call)."""
        self._state = state
        for viewer in self._told:
            self.tell_state(viewer)

    def tell_state(self, viewer: Seat) -> None:
        """Tell `viewer` the session's last state, unless it was told it already."""
        told = self._told[viewer]
        if (
            self._state is not None
            and told.state_shown != self._state
            and viewer.send_message(self._state.message(viewer.may_speak))
        ):
            told.state_shown = self._state

    def send_cursor(self, cursor: Cursor, viewers: Iterable[Seat], composited: bool) -> None:
        """Tell `viewers` where the cursor is (and whether it is drawn into the picture: `composited`), with its
        image when they lack it."""
        shown = (cursor_key(cursor), composited)
        for viewer in viewers:
            told = self._told[viewer]
            if told.cursor_shown == shown:
                continue
            with_image = cursor.image is not None and told.cursor_serial != cursor.serial
            image = self._cursor_png(cursor) if with_image else None
            if not viewer.send_message(cursor_message(cursor, image, composited)):
                continue  # its channel is not open yet: try again next frame
            told.cursor_shown = shown
            if with_image:
                told.cursor_serial = cursor.serial

    def _cursor_png(self, cursor: Cursor) -> str:
        if self._cursor_image is None or self._cursor_image[0] != cursor.serial:
            self._cursor_image = (cursor.serial, png_data_url(cursor.image))
        return self._cursor_image[1]


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
