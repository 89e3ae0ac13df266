"""The interface every frame source implements, and the values that cross it."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vgpustream.errors import UnsupportedOperation
from vgpustream.input.clipboard import GuestClipboard
from vgpustream.input.events import InputEvent
from vgpustream.input.microphone import MicrophoneIn
from vgpustream.media.formats import fourcc_text
from vgpustream.media.sound import SoundOut


class SourceState(enum.StrEnum):
    """What a viewer sees of the source: a picture, a dark display, or nothing at all."""

    STARTING = "starting"
    STREAMING = "streaming"
    NO_SIGNAL = "no_signal"
    LOST = "lost"


@dataclass(frozen=True)
class PlaneInfo:
    """One display plane as the source describes it (DRM fourcc and modifier, geometry, buffer id)."""

    fourcc: int
    modifier: int
    width: int
    height: int
    stride: int
    size: int
    dmabuf_id: int | None = None
    region_index: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "fourcc": fourcc_text(self.fourcc),
            "fourcc_code": self.fourcc,
            "modifier": self.modifier,
            "width": self.width,
            "height": self.height,
            "stride": self.stride,
            "size": self.size,
        }
        if self.dmabuf_id is not None:
            out["dmabuf_id"] = self.dmabuf_id
        if self.region_index is not None:
            out["region_index"] = self.region_index
        return out


@dataclass(frozen=True)
class Planes:
    """The source's current primary and cursor planes (None where there is none)."""

    primary: PlaneInfo | None
    cursor: PlaneInfo | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "primary": self.primary.to_json() if self.primary else None,
            "cursor": self.cursor.to_json() if self.cursor else None,
        }


@dataclass(frozen=True)
class Rect:
    """A rectangle of a picture in pixels: its top-left corner and its size."""

    x: int
    y: int
    width: int
    height: int

    @property
    def area(self) -> int:
        return self.width * self.height

    @property
    def slices(self) -> tuple[slice, slice]:
        """The rows and columns it covers, to index a (height, width, ...) array with."""
        return slice(self.y, self.y + self.height), slice(self.x, self.x + self.width)

    def moved(self, dx: int, dy: int) -> Rect:
        return Rect(self.x + dx, self.y + dy, self.width, self.height)

    def intersection(self, other: Rect) -> Rect | None:
        """The part both cover; None if they do not meet."""
        x, y = max(self.x, other.x), max(self.y, other.y)
        right = min(self.x + self.width, other.x + other.width)
        bottom = min(self.y + self.height, other.y + other.height)
        return Rect(x, y, right - x, bottom - y) if right > x and bottom > y else None

    def bounds(self, other: Rect) -> Rect:
        """The least rectangle that covers both."""
        x, y = min(self.x, other.x), min(self.y, other.y)
        right = max(self.x + self.width, other.x + other.width)
        bottom = max(self.y + self.height, other.y + other.height)
        return Rect(x, y, right - x, bottom - y)


@dataclass
class Frame:
    """A captured picture: packed pixels of one DRM format, rows `stride` bytes apart.

    `pixels` has shape (height, width, bytes_per_pixel) and may be a strided view into a
    buffer the source reuses: it is valid until the source's next `next_frame` call.
    """

    pixels: np.ndarray
    fourcc: int
    captured_at: float
    """Wall-clock capture time (time.time()), used for latency measurement and RTP timestamps."""
    damage: tuple[Rect, ...] | None = None
    """The parts of the picture that changed since the source's last frame, as QEMU's `Update` calls give
    them; None where the source cannot tell (any of it may have changed)."""

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


@dataclass(frozen=True)
class Cursor:
    """The pointer image and where the guest put it. `serial` changes whenever the image does."""

    image: np.ndarray | None = field(repr=False)
    """BGRA pixels, shape (height, width, 4); None when the guest has no cursor image."""
    hot_x: int
    hot_y: int
    x: int
    y: int
    visible: bool
    serial: int


class InputSink(ABC):
    """Where a session's validated input events go (the guest's keyboard and mouse); lives on the event loop."""

    async def open(self) -> None:  # noqa: B027 - most sinks have nothing to open
        """Connect to the guest's input, after the source opened; must not block the event loop."""

    @abstractmethod
    def send(self, event: InputEvent) -> None:
        """Deliver one event; must not block the event loop."""

    @property
    def relative_pointer(self) -> bool:
        """Whether the guest's pointer takes only relative motion (a mouse, no tablet): consoles lock the pointer."""
        return False

    async def close(self) -> None:  # noqa: B027 - most sinks have nothing to close
        """Release what `open` acquired."""


@dataclass(frozen=True)
class Head:
    """One display head of the VM a source shows (QEMU: one Console), by the number its source URL takes."""

    console: int
    """What a source URL's `?console=` names it by."""
    label: str
    width: int
    height: int
    state: SourceState
    """`no_signal` for a head the guest has not turned on."""


class Heads(ABC):
    """The display heads of the VM behind a source; an event-loop object, like `Source.input_sink`."""

    @abstractmethod
    async def list(self, known: Mapping[int, SourceState]) -> list[Head]:
        """Every head of the VM, in order, with its state: as `known` says (the heads sessions show, this
        source's among them), else as the VM shows it now. SourceUnavailable while the VM cannot be asked."""


class Source(ABC):
    """A display to capture. Its owner calls every method on one thread of its own (a session's capture
    thread), never on the event loop: each may block. `input_sink` is the exception: an event-loop object.
    """

    state: SourceState = SourceState.STARTING

    def open(self) -> None:  # noqa: B027 - most sources have nothing to open
        """Acquire the device or connection; raise a typed error if it cannot be had."""

    @abstractmethod
    def planes(self) -> Planes:
        """The current plane metadata."""

    @abstractmethod
    def next_frame(self) -> Frame | None:
        """Capture the current picture, or return None when it has not changed since the last call."""

    def cursor(self) -> Cursor | None:
        """The current cursor, where the source has one."""
        return None

    @property
    def input_sink(self) -> InputSink | None:
        """Where input for this display goes; None for a view-only source."""
        return None

    @property
    def sound(self) -> SoundOut | None:
        """Where the guest's sound comes out (an event-loop object, like `input_sink`); None for a silent source."""
        return None

    @property
    def microphone(self) -> MicrophoneIn | None:
        """Where viewers' microphone sound goes into the guest (an event-loop object); None where it cannot."""
        return None

    @property
    def clipboard(self) -> GuestClipboard | None:
        """The guest's clipboard (an event-loop object, like `input_sink`); None where the source has none."""
        return None

    @property
    def heads(self) -> Heads | None:
        """The display heads of the VM (an event-loop object, like `input_sink`); None for a source of one head."""
        return None

    def display_limits(self) -> tuple[int, int] | None:
        """The largest display the guest can be asked for (EDID max_xres, max_yres), where known."""
        return None

    def display_range(self) -> tuple[int, int] | None:
        """The largest display size (width, height) the guest may be asked for; None if it cannot be asked."""
        return None

    def resize(self, width: int, height: int, scale: float = 1.0) -> None:
        """Ask the guest for another display size (the viewer's window, in device pixels at devicePixelRatio
        `scale`), within `display_range()`."""
        raise UnsupportedOperation("this source cannot change its display size")

    def close(self) -> None:  # noqa: B027 - most sources have nothing to close
        """Release everything `open` acquired."""
