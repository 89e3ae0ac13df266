"""The synthetic source: a moving test picture, so that vgpustream runs anywhere.

`synthetic:1280x720@30` shows a desktop (`?pattern=desktop`, the default; vgpustream.sources.desktop):
windows in which a terminal is typed in, a document scrolls and a small video plays, a few percent of
the picture changing at a time and reported as damage; it takes typing and clicks, and its pointer is a
cursor plane. `?seed=N` picks another wallpaper and session. `?pattern=text` scrolls a page of fine,
text-like glyphs by 4 pixels a frame, so that every pixel changes in every picture, and draws the last
pointer position from the input protocol. Both draw the frame stamp (vgpustream.media.stamp) at the top left.
With `?still=1` the picture stands still: only input changes it. With `?cursor=1` the text page's pointer
is not drawn into the picture but offered as a cursor (a red arrow), like a guest's cursor plane. With
`?cycle=S` the mode changes every S seconds, between the given size and half of it, like a guest that
keeps switching modes (the soak bench's). With `?resize=1` it follows viewers' resize requests, like a
guest whose display driver takes every mode it is offered. With `?tone=HZ` it has sound: a sine of HZ
(20..20000) hertz, played while the source is open (vgpustream.sources.tone), like a guest playing.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import deque
from urllib.parse import parse_qs

import numpy as np

from vgpustream.errors import InvalidSourceUrl, bounded
from vgpustream.input.events import InputEvent, KeyEvent, PointerEvent
from vgpustream.media.formats import DRM_FORMAT_MOD_LINEAR, DRM_FORMAT_XRGB8888
from vgpustream.media.sound import SoundOut
from vgpustream.media.stamp import MIN_WIDTH, Stamp, draw_stamp
from vgpustream.sources.arrow import arrow
from vgpustream.sources.base import Cursor, Frame, InputSink, PlaneInfo, Planes, Rect, Source, SourceState
from vgpustream.sources.common.options import DEFAULT_MAX_EDGE, MIN_EDGE
from vgpustream.sources.desktop import Desktop, key_text
from vgpustream.sources.pattern import Pattern, ViewerInput
from vgpustream.sources.tone import Tone

_SPEC = re.compile(r"(?:(\d{1,5})x(\d{1,5}))?(?:@(\d{1,3}))?")
GLYPH_W, GLYPH_H = 8, 16
SCROLL_STEP = 4
BACKGROUND = 0xE8
INK = 0x20
POINTER_IDLE = (0, 0, 255)  # BGR red
POINTER_PRESSED = (0, 200, 0)  # BGR green
TONE_HZ = range(20, 20_001)
MAX_FPS = 960  # faster than the pipeline bench's loop runs at 1280x720 (240 was not)
MAX_SEED = 2**31 - 1
PATTERNS = ("desktop", "text")
"""The pictures the source can show, the default first."""
SHIFT = frozenset(("ShiftLeft", "ShiftRight"))
MAX_QUEUED = 256
"""The most typed characters and clicks held for the next picture; more are dropped."""


class SyntheticInput(InputSink):
    """Keeps the last pointer state and the keys held down, for the picture to show, and what was typed and
    clicked until the next picture takes it (deques: the capture thread takes while the event loop adds)."""

    def __init__(self) -> None:
        self.pointer: PointerEvent | None = None
        self.keys_down: set[str] = set()
        self.events = 0
        self._typed: deque[str] = deque(maxlen=MAX_QUEUED)
        self._clicks: deque[tuple[float, float]] = deque(maxlen=MAX_QUEUED)

    def send(self, event: InputEvent) -> None:
        self.events += 1
        if isinstance(event, PointerEvent):
            if event.buttons & 1 and not (self.pointer is not None and self.pointer.buttons & 1):
                self._clicks.append((event.x, event.y))
            self.pointer = event
        elif isinstance(event, KeyEvent):
            (self.keys_down.add if event.down else self.keys_down.discard)(event.code)
            if event.down and (text := key_text(event.code, bool(self.keys_down & SHIFT))) is not None:
                self._typed.append(text)

    def take(self) -> ViewerInput:
        """The pointer, and what was typed and clicked since the last call."""
        typed = "".join(self._typed.popleft() for _ in range(len(self._typed)))
        clicks = tuple(self._clicks.popleft() for _ in range(len(self._clicks)))
        return ViewerInput(self.pointer, typed, clicks)


class TextPage(Pattern):
    """A light page of fine glyphs scrolled sideways by SCROLL_STEP pixels a picture: every pixel changes.

    The viewer's pointer is drawn into the picture as a square (red, green while pressed), unless it is
    offered as a cursor plane (`cursor_plane`).
    """

    def __init__(self, width: int, height: int, cursor_plane: bool = False) -> None:
        self.width, self.height = width, height
        self.cursor_plane = cursor_plane
        self._background = _glyph_page(width + GLYPH_W * 64, height)
        self.pixels = np.empty((height, width, 4), dtype=np.uint8)
        self._drawn: tuple[int, PointerEvent | None] | None = None

    def draw(self, number: int, viewer: ViewerInput) -> tuple[Rect, ...]:
        pointer = None if self.cursor_plane else viewer.pointer
        if self._drawn == (number, pointer):
            return ()
        self.render(number, pointer)
        self._drawn = (number, pointer)
        return (Rect(0, 0, self.width, self.height),)

    def render(self, number: int, pointer: PointerEvent | None) -> None:
        """Draw picture `number` with the pointer at `pointer` into `pixels`."""
        period = self._background.shape[1] - self.width
        offset = number * SCROLL_STEP % period
        np.copyto(self.pixels, self._background[:, offset : offset + self.width])
        draw_stamp(self.pixels, Stamp(frame=number, time_ms=int(time.time() * 1000)))
        if pointer is not None:
            self._draw_pointer(pointer)

    def _draw_pointer(self, pointer: PointerEvent) -> None:
        half = max(4, self.height // 60)
        cx = round(pointer.x * (self.width - 1))
        cy = round(pointer.y * (self.height - 1))
        top, left = max(0, cy - half), max(0, cx - half)
        color = POINTER_PRESSED if pointer.buttons else POINTER_IDLE
        self.pixels[top : cy + half + 1, left : cx + half + 1, :3] = color

    def cursor(self, pointer: PointerEvent | None) -> Cursor | None:
        if not self.cursor_plane:
            return None
        if pointer is None:
            return Cursor(image=ARROW, hot_x=0, hot_y=0, x=0, y=0, visible=False, serial=1)
        x, y = round(pointer.x * (self.width - 1)), round(pointer.y * (self.height - 1))
        return Cursor(image=ARROW, hot_x=0, hot_y=0, x=x, y=y, visible=True, serial=1)


class SyntheticSource(Source):
    """A test picture in XRGB8888 (DRM XR24), like a guest's primary plane: a desktop or a text page."""

    def __init__(
        self,
        width: int = 1280,
        height: int = 720,
        fps: int = 30,
        *,
        pattern: str = PATTERNS[0],
        seed: int = 0,
        still: bool = False,
        cursor: bool = False,
        cycle: float | None = None,
        resizable: bool = False,
        tone: int | None = None,
    ) -> None:
        """`tone`: the frequency of its sound, if it has any (it must then be made on the event loop)."""
        _check_size(width, height)
        if pattern not in PATTERNS:
            raise InvalidSourceUrl(f"unknown synthetic pattern {bounded(pattern, 20)}; known: {', '.join(PATTERNS)}")
        if not 1 <= fps <= MAX_FPS:
            raise InvalidSourceUrl(f"synthetic fps must be within 1..{MAX_FPS}")
        if not 0 <= seed <= MAX_SEED:
            raise InvalidSourceUrl(f"synthetic seed must be a whole number within 0..{MAX_SEED}")
        if cycle is not None and not 1 <= cycle <= 3600:
            raise InvalidSourceUrl("synthetic cycle must be within 1..3600 seconds")
        if tone is not None and tone not in TONE_HZ:
            raise InvalidSourceUrl("synthetic tone must be within 20..20000 Hz")
        self.fps = fps
        self.pattern_name, self.seed = pattern, seed
        self._modes = ((width, height), (max(MIN_WIDTH, width // 4 * 2), max(MIN_EDGE, height // 4 * 2)))
        self._cycle = cycle
        self.resizable = resizable
        self.still = still
        self.has_cursor = cursor
        self._input = SyntheticInput()
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._clock_origin = time.time()
        self._set_size(width, height)
        self.state = SourceState.STREAMING
        self._tone = Tone(tone) if tone is not None else None
        self._loop = asyncio.get_running_loop() if tone is not None else None
        """The event loop the tone plays on (open and close are called on the capture thread)."""

    @classmethod
    def from_url(cls, spec: str, query: str) -> SyntheticSource:
        match = _SPEC.fullmatch(spec)
        if not match:
            raise InvalidSourceUrl("synthetic source URL must look like synthetic:1280x720@30")
        width, height, fps = match.groups()
        options = parse_qs(query, keep_blank_values=True)
        pattern = options.pop("pattern", [PATTERNS[0]])[-1]
        seed = options.pop("seed", ["0"])[-1]
        still = options.pop("still", ["0"])[-1] in ("1", "true", "yes")
        cursor = options.pop("cursor", ["0"])[-1] in ("1", "true", "yes")
        cycle = options.pop("cycle", [None])[-1]
        resizable = options.pop("resize", ["0"])[-1] in ("1", "true", "yes")
        tone = options.pop("tone", [None])[-1]
        if options:
            raise InvalidSourceUrl(
                "synthetic source takes only the options 'pattern', 'seed', 'still', 'cursor', 'cycle', 'resize'"
                " and 'tone'"
            )
        if not (seed.isascii() and seed.isdecimal() and len(seed) <= len(str(MAX_SEED))):
            raise InvalidSourceUrl(f"synthetic seed must be a whole number within 0..{MAX_SEED}")
        if cycle is not None and not cycle.isdecimal():
            raise InvalidSourceUrl("synthetic cycle must be a whole number of seconds")
        if tone is not None and not tone.isdecimal():
            raise InvalidSourceUrl("synthetic tone must be a whole number of hertz")
        size = int(width or 1280), int(height or 720)
        cycle_s = int(cycle) if cycle else None
        tone_hz = int(tone) if tone is not None else None
        return cls(
            *size,
            int(fps or 30),
            pattern=pattern,
            seed=int(seed),
            still=still,
            cursor=cursor,
            cycle=cycle_s,
            resizable=resizable,
            tone=tone_hz,
        )

    def open(self) -> None:
        if self._tone is not None:
            assert self._loop is not None
            asyncio.run_coroutine_threadsafe(self._tone.start(), self._loop).result()

    def close(self) -> None:
        if self._tone is not None:
            assert self._loop is not None
            asyncio.run_coroutine_threadsafe(self._tone.stop(), self._loop).result()

    def _set_size(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.pattern: Pattern = (
            Desktop(width, height, self.fps, self.seed, self._clock_origin)
            if self.pattern_name == "desktop"
            else TextPage(width, height, cursor_plane=self.has_cursor)
        )

    def planes(self) -> Planes:
        stride = self.width * 4
        return Planes(
            primary=PlaneInfo(
                fourcc=DRM_FORMAT_XRGB8888,
                modifier=DRM_FORMAT_MOD_LINEAR,
                width=self.width,
                height=self.height,
                stride=stride,
                size=stride * self.height,
            )
        )

    def frame_number(self) -> int:
        """The number of the picture on show now (constant when still)."""
        return 0 if self.still else int((time.monotonic() - self._started) * self.fps)

    def next_frame(self) -> Frame | None:
        with self._lock:
            if self._cycle is not None:
                mode = self._modes[int((time.monotonic() - self._started) / self._cycle) % 2]
                if mode != (self.width, self.height):
                    self._set_size(*mode)
            damage = self.pattern.draw(self.frame_number(), self._input.take())
            if not damage:
                return None
            return Frame(self.pattern.pixels, DRM_FORMAT_XRGB8888, captured_at=time.time(), damage=damage)

    @property
    def pixels(self) -> np.ndarray:
        """The buffer the last frame was drawn into (reused by the next one)."""
        return self.pattern.pixels

    def cursor(self) -> Cursor | None:
        return self.pattern.cursor(self._input.pointer)

    @property
    def input_sink(self) -> SyntheticInput:
        return self._input

    @property
    def sound(self) -> SoundOut | None:
        return self._tone.out if self._tone is not None else None

    def display_range(self) -> tuple[int, int] | None:
        return (DEFAULT_MAX_EDGE, DEFAULT_MAX_EDGE) if self.resizable else None

    def resize(self, width: int, height: int, scale: float = 1.0) -> None:
        """Take the mode nearest width x height that the picture can have (even edges, room for the stamp)."""
        width, height = max(MIN_WIDTH, width & ~1), max(MIN_EDGE, height & ~1)
        _check_size(width, height)
        with self._lock:
            self._set_size(width, height)


def _check_size(width: int, height: int) -> None:
    fits = MIN_WIDTH <= width <= DEFAULT_MAX_EDGE and MIN_EDGE <= height <= DEFAULT_MAX_EDGE
    if not fits or width % 2 or height % 2:
        raise InvalidSourceUrl(
            f"synthetic size must be even, width {MIN_WIDTH}..{DEFAULT_MAX_EDGE}, height {MIN_EDGE}..{DEFAULT_MAX_EDGE}"
        )


ARROW = arrow(POINTER_IDLE)


def _glyph_page(width: int, height: int) -> np.ndarray:
    """A light page of dark, 1-pixel-stroke pseudo glyphs in lines of words, BGRX.

    Built once per size; frames are windows into it, so drawing a frame is one copy.
    """
    rng = np.random.default_rng(2024)
    glyphs = _glyph_set(rng, 96)
    rows, cols = height // GLYPH_H + 1, width // GLYPH_W + 1
    index = rng.integers(0, len(glyphs), size=(rows, cols))
    ink = glyphs[index]  # rows, cols, GLYPH_H, GLYPH_W
    ink &= (rng.random((rows, cols)) > 0.18)[:, :, None, None]  # word gaps
    ink[1::4] = False  # paragraph gaps: every fourth line blank
    mask = ink.transpose(0, 2, 1, 3).reshape(rows * GLYPH_H, cols * GLYPH_W)[:height, :width]
    page = np.full((height, width, 4), BACKGROUND, dtype=np.uint8)
    page[mask, :3] = INK
    # a faint colour wash so chroma is exercised too, and a ruler every 64 columns
    page[:, :, 0] = np.where(mask, INK, BACKGROUND - (np.arange(width) % 256 // 8)).astype(np.uint8)
    page[:, ::64, 1] = 0x60
    return page


def _glyph_set(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` random glyphs of GLYPH_H x GLYPH_W: strokes on a 3x5 grid, as bitmap fonts have."""
    glyphs = np.zeros((count, GLYPH_H, GLYPH_W), dtype=bool)
    for glyph in glyphs:
        for _ in range(rng.integers(2, 5)):
            if rng.random() < 0.5:  # horizontal stroke
                y = 3 + 2 * rng.integers(0, 5)
                x0, x1 = sorted(rng.integers(1, 7, size=2))
                glyph[y, x0 : x1 + 1] = True
            else:  # vertical stroke
                x = 1 + 2 * rng.integers(0, 3)
                y0, y1 = sorted(rng.integers(3, 13, size=2))
                glyph[y0 : y1 + 1, x] = True
    return glyphs
