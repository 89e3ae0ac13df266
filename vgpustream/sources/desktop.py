"""The synthetic desktop: a picture a person recognizes, in which only a few percent changes at a time.

A wallpaper, a taskbar with a clock, a terminal in which a scripted user types commands at a person's
speed (and whatever a viewer types), a document that scrolls now and then, a notes window that is dragged
across the screen every so often, and a small video (a moving test card). Everything the script does is a
function of the frame number and the seed, so two desktops with the same seed and size draw the same
pictures; only a viewer's input and the clock's origin make them differ.

Each window is a surface of its own. A change is drawn into its window's surface, and the part of the
screen it covers is composed again (wallpaper, then the windows bottom to top, then the taskbar): the
rectangles composed are the damage a frame reports, as QEMU's `Update(x, y, w, h)` calls do.
The mouse pointer is not drawn: it is a cursor plane (`cursor()`), as real sources give it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from vgpustream.input.events import PointerEvent
from vgpustream.media.stamp import Stamp, draw_stamp, stamp_rows
from vgpustream.sources.arrow import arrow
from vgpustream.sources.base import Cursor, Rect
from vgpustream.sources.font import CELL_H, Typeface
from vgpustream.sources.pattern import Pattern, ViewerInput

# colours, BGR
TITLE_FOCUSED = (0xA8, 0x6A, 0x2E)
TITLE_UNFOCUSED = (0x80, 0x78, 0x74)
TITLE_INK = (0xFF, 0xFF, 0xFF)
BORDER = (0x30, 0x30, 0x30)
TERMINAL_PAPER = (0x24, 0x1E, 0x1E)
TERMINAL_INK = (0xD0, 0xE8, 0xD0)
DOCUMENT_PAPER = (0xFA, 0xFA, 0xFA)
DOCUMENT_INK = (0x30, 0x30, 0x30)
NOTES_PAPER = (0xC8, 0xF4, 0xFC)
HEADING_INK = (0x90, 0x50, 0x10)
TASKBAR = (0x38, 0x30, 0x2C)
TASKBAR_INK = (0xF0, 0xF0, 0xF0)
TASKBAR_FOCUSED = (0x70, 0x60, 0x58)
BARS = ((0xC0, 0xC0, 0xC0), (0x00, 0xC0, 0xC0), (0xC0, 0xC0, 0x00), (0x00, 0xC0, 0x00),
        (0xC0, 0x00, 0xC0), (0x00, 0x00, 0xC0), (0xC0, 0x00, 0x00))  # fmt: skip

PROMPT = "user@vm:~$ "
PAUSE_AFTER_INPUT = 5.0
"""Seconds the scripted user waits after a viewer's last key, so that what the viewer types stays together."""
SCROLL_EVERY, SCROLL_TAKES = 10.0, 0.5
"""Seconds between the document's scrolls, and how long one takes."""
DRAG_EVERY, DRAG_TAKES = 15.0, 1.5
"""Seconds between drags of the notes window, and how long one takes."""
ARROW = arrow((0xFF, 0xFF, 0xFF))

_LETTERS = {f"Key{c}": (c.lower(), c) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
_DIGITS = {f"Digit{d}": (d, s) for d, s in zip("1234567890", "!@#$%^&*()", strict=True)}
_PUNCTUATION = {
    "Space": (" ", " "), "Minus": ("-", "_"), "Equal": ("=", "+"), "BracketLeft": ("[", "{"),
    "BracketRight": ("]", "}"), "Backslash": ("\\", "|"), "Semicolon": (";", ":"), "Quote": ("'", '"'),
    "Backquote": ("`", "~"), "Comma": (",", "<"), "Period": (".", ">"), "Slash": ("/", "?"),
    "Enter": ("\n", "\n"), "NumpadEnter": ("\n", "\n"), "Backspace": ("\b", "\b"),
}  # fmt: skip
KEY_TEXT = {**_LETTERS, **_DIGITS, **_PUNCTUATION}
"""What a key (KeyboardEvent.code) types on a US layout: (unshifted, shifted); Enter is a newline, Backspace \\b."""


def key_text(code: str, shift: bool) -> str | None:
    """The character the key `code` types, with or without Shift; None for a key that types nothing."""
    pair = KEY_TEXT.get(code)
    return None if pair is None else pair[shift]


class Window:
    """A window: a surface of its own (title bar, border, content) and where it stands on the screen."""

    def __init__(self, title: str, rect: Rect, scale: int, paper: tuple[int, int, int]) -> None:
        self.title = title
        self.rect = rect
        self.scale = scale
        self.surface = np.empty((rect.height, rect.width, 4), dtype=np.uint8)
        self.surface[:] = (*paper, 0xFF)
        bar = min(rect.height - 1, (CELL_H + 2) * scale)
        self.content = Rect(scale, bar, max(1, rect.width - 2 * scale), max(1, rect.height - bar - scale))
        """Where the window's own picture goes, in the surface."""
        self._title_face = {focused: Typeface(scale, TITLE_INK, _title(focused)) for focused in (False, True)}

    def draw_frame(self, focused: bool) -> None:
        """Draw the border and the title bar, in the focused window's colour or not."""
        self.surface[: self.content.y] = (*_title(focused), 0xFF)
        for edge in (np.s_[:, : self.scale], np.s_[:, -self.scale :], np.s_[-self.scale :]):
            self.surface[edge] = (*BORDER, 0xFF)
        self._title_face[focused].draw(self.surface[: self.content.y], 4 * self.scale, self.scale, self.title)

    @property
    def view(self) -> np.ndarray:
        """The content area of the surface."""
        return self.surface[self.content.slices]

    def advance(self, number: int, fps: int) -> list[Rect]:
        """Bring the content to picture `number`; the surface rectangles it changed."""
        return []


class Terminal(Window):
    """A text terminal: a grid of cells, a block cursor after the last character, scrolling up when full."""

    def __init__(self, rect: Rect, scale: int, seed: int) -> None:
        super().__init__("Terminal", rect, scale, TERMINAL_PAPER)
        self.face = Typeface(scale, TERMINAL_INK, TERMINAL_PAPER)
        self.columns = max(1, self.content.width // self.face.cell_w)
        self.rows = max(1, self.content.height // self.face.cell_h)
        self.lines = [""]
        """The text of the rows on show, the last one the cursor's."""
        self._script = _session(np.random.default_rng(seed))
        self._due, self._next = next(self._script)
        self._clock = 0.0
        """Seconds of the script played so far (it stands while the viewer types)."""
        self._paused_until = 0.0
        self._last_number = 0

    def write(self, text: str) -> list[Rect]:
        """Type `text` at the cursor (newlines, backspaces and wrapping as a terminal does them)."""
        touched, scrolled = self._cursor_cell(), False
        for char in text:
            if char == "\n":
                scrolled |= self._new_line()
            elif char == "\b":
                if self.lines[-1]:
                    self._draw_cell(len(self.lines[-1]), self.face.paper)  # the cursor moves back over it
                    self.lines[-1] = self.lines[-1][:-1]
            else:
                if len(self.lines[-1]) >= self.columns:
                    scrolled |= self._new_line()
                self.face.draw(self.view, len(self.lines[-1]) * self.face.cell_w, self._row_y(), char)
                self.lines[-1] += char
            touched = touched.bounds(self._cursor_cell())
        self._draw_cursor()
        return [self.content if scrolled else touched]

    def advance(self, number: int, fps: int) -> list[Rect]:
        """Play the script up to picture `number`, unless a viewer typed in the last PAUSE_AFTER_INPUT seconds."""
        now = number / fps
        if now >= self._paused_until:
            self._clock += max(0, number - self._last_number) / fps
        self._last_number = number
        damage: list[Rect] = []
        while self._due <= self._clock:
            damage += self.write(self._next)
            delay, self._next = next(self._script)
            self._due += delay
        return damage

    def typed(self, text: str, number: int, fps: int) -> list[Rect]:
        """A viewer typed `text` at picture `number`: write it, and hold the script back for a while."""
        self._paused_until = number / fps + PAUSE_AFTER_INPUT
        return self.write(text)

    def _new_line(self) -> bool:
        """Move the cursor to a new line; whether that scrolled the text up."""
        self._draw_cell(len(self.lines[-1]), self.face.paper)  # the cursor leaves the line
        self.lines.append("")
        if len(self.lines) <= self.rows:
            return False
        del self.lines[0]
        view, step = self.view, self.face.cell_h
        view[: (self.rows - 1) * step] = view[step : self.rows * step]
        view[(self.rows - 1) * step :] = self.face.paper
        return True

    def _row_y(self) -> int:
        return (len(self.lines) - 1) * self.face.cell_h

    def _cell(self, column: int) -> Rect:
        """The surface rectangle of the cursor row's cell `column` (clipped to the content)."""
        x = self.content.x + min(column, self.columns - 1) * self.face.cell_w
        cell = Rect(x, self.content.y + self._row_y(), self.face.cell_w, self.face.cell_h).intersection(self.content)
        assert cell is not None, "the grid's cells all start inside the content"
        return cell

    def _cursor_cell(self) -> Rect:
        return self._cell(len(self.lines[-1]))

    def _draw_cursor(self) -> None:
        self._draw_cell(len(self.lines[-1]), self.face.ink)

    def _draw_cell(self, column: int, colour: np.ndarray) -> None:
        if column < self.columns:
            cell = self._cell(column).moved(-self.content.x, -self.content.y)
            self.view[cell.slices] = colour


class Document(Window):
    """A long page of text that scrolls a few lines every SCROLL_EVERY seconds, back to the top at its end."""

    def __init__(self, rect: Rect, scale: int, seed: int) -> None:
        super().__init__("Document - notes on the release", rect, scale, DOCUMENT_PAPER)
        body, heading = Typeface(scale, DOCUMENT_INK, DOCUMENT_PAPER), Typeface(scale, HEADING_INK, DOCUMENT_PAPER)
        columns = max(1, self.content.width // body.cell_w - 2)
        self.page = np.empty((self.content.height + 60 * body.cell_h, self.content.width, 4), dtype=np.uint8)
        self.page[:] = body.paper
        rng = np.random.default_rng(seed + 1)
        for row in range(self.page.shape[0] // body.cell_h):
            face, text = (heading, f"{row // 12 + 1}. " + _words(rng, columns // 2)) if row % 12 == 0 else (body, "")
            if row % 12 not in (0, 1, 11):
                text = _words(rng, columns)
            face.draw(self.page, body.cell_w, row * body.cell_h, text)
        self.step = 3 * body.cell_h
        self.offset = -1

    def advance(self, number: int, fps: int) -> list[Rect]:
        period, takes = round(SCROLL_EVERY * fps), max(1, round(SCROLL_TAKES * fps))
        scrolls, into = divmod(number + period // 2, period)  # the first scroll half a period in
        offset = (scrolls * self.step + self.step * min(into, takes) // takes) % (
            self.page.shape[0] - self.content.height + 1
        )
        if offset == self.offset:
            return []
        self.offset = offset
        self.view[:] = self.page[offset : offset + self.content.height]
        return [self.content]


class Video(Window):
    """A small video: colour bars moving sideways, every pixel of its content new in every picture."""

    def __init__(self, rect: Rect, scale: int) -> None:
        super().__init__("Video", rect, scale, (0, 0, 0))
        width, height = self.content.width, self.content.height
        bar = np.repeat(np.arange(14) % 7, -(-width // 7))[: 2 * width]  # two periods, to slide a window over
        bar = np.resize(bar, 2 * width)
        self.card = np.empty((height, 2 * width, 4), dtype=np.uint8)
        self.card[:] = np.array([(*BARS[i], 0xFF) for i in range(7)], dtype=np.uint8)[bar]
        ramp = np.linspace(0, 255, 2 * width).astype(np.uint8)
        self.card[height * 3 // 4 :, :, :3] = ramp[None, :, None]
        self.speed = 2 * scale

    def advance(self, number: int, fps: int) -> list[Rect]:
        offset = number * self.speed % self.content.width
        self.view[:] = self.card[:, offset : offset + self.content.width]
        return [self.content]


class Taskbar:
    """The bar along the bottom: a button per window, the focused one lit, and a clock at the right."""

    def __init__(self, rect: Rect, scale: int) -> None:
        self.rect = rect
        self.surface = np.empty((rect.height, rect.width, 4), dtype=np.uint8)
        self.faces = {lit: Typeface(scale, TASKBAR_INK, TASKBAR_FOCUSED if lit else TASKBAR) for lit in (False, True)}
        self.scale = scale
        self.clock = ""
        """The text the clock shows ("" after the bar was drawn afresh, so that the next tick draws it)."""

    def draw(self, windows: list[Window], focused: Window) -> Rect:
        """Draw the buttons; the surface rectangle drawn."""
        self.surface[:] = self.faces[False].paper
        face, x = self.faces[False], 4 * self.scale
        for window in windows:
            label = f" {window.title.split(' ')[0]} "
            self.faces[window is focused].draw(self.surface, x, 2 * self.scale, label)
            x += (len(label) + 1) * face.cell_w
        self.clock = ""
        return Rect(0, 0, self.rect.width, self.rect.height)

    def tick(self, text: str) -> list[Rect]:
        """Show `text` in the clock; the surface rectangle changed, if any."""
        if text == self.clock:
            return []
        self.clock = text
        face = self.faces[False]
        x = max(0, self.rect.width - (len(text) + 1) * face.cell_w)
        face.draw(self.surface, x, 2 * self.scale, text)
        return [Rect(x, 0, self.rect.width - x, self.rect.height)]


class Desktop(Pattern):
    """The desktop at one size, drawn into `pixels` (XRGB8888) by `draw(number)`."""

    def __init__(self, width: int, height: int, fps: int, seed: int = 0, clock_origin: float = 0.0) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.clock_origin = clock_origin
        """The wall-clock time (seconds since the epoch) of picture 0, for the taskbar's clock."""
        scale = max(1, min(width // 1280, height // 720) + 1)
        self.pixels = np.empty((height, width, 4), dtype=np.uint8)
        self.wallpaper = _wallpaper(width, height, np.random.default_rng(seed))
        bar = min(height // 4, (CELL_H + 4) * scale)
        top = min(height - bar - 2, stamp_rows(width) + 4 * scale)
        area = Rect(0, top, width, height - bar - top)
        self.terminal = Terminal(_part(area, 0.02, 0.0, 0.46, 0.56), scale, seed)
        self.document = Document(_part(area, 0.51, 0.0, 0.46, 0.74), scale, seed)
        self.video = Video(_part(area, 0.05, 0.66, 0.18, 0.28), scale)
        self.notes = Window("Notes", _part(area, 0.36, 0.55, 0.22, 0.3), scale, NOTES_PAPER)
        Typeface(scale, DOCUMENT_INK, NOTES_PAPER).draw(self.notes.view, 2 * scale, 2 * scale, "a note, dragged about")
        self._drag_from, self._drag_to = self.notes.rect, _part(area, 0.6, 0.1, 0.22, 0.3)
        self.stack: list[Window] = [self.document, self.video, self.terminal, self.notes]
        """The windows bottom to top."""
        self.focused = self.terminal
        self.taskbar = Taskbar(Rect(0, height - bar, width, bar), scale)
        self.hand = (width // 2, height // 2)
        """Where the scripted user's pointer is (the cursor shows it until a viewer's pointer comes)."""
        self._drawn: int | None = None

    def draw(self, number: int, viewer: ViewerInput) -> tuple[Rect, ...]:
        """Bring the picture to `number` with the viewer's input since the last call; the rectangles changed
        (none when nothing did); the whole picture on the first call."""
        first = self._drawn is None
        if not first and number == self._drawn and not viewer.typed and not viewer.clicks:
            return ()
        damage: list[Rect] = []
        if first:
            for window in self.stack:
                window.draw_frame(window is self.focused)
            self.taskbar.draw(self.stack, self.focused)
        damage += self._clicks(viewer)
        if viewer.typed:
            damage += _on_screen(self.terminal, self.terminal.typed(viewer.typed, number, self.fps))
        for window in self.stack:
            damage += _on_screen(window, window.advance(number, self.fps))
        damage += self._drag(number)
        clock = time.strftime("%H:%M:%S", time.localtime(self.clock_origin + number / self.fps))
        damage += _on_screen(self.taskbar, self.taskbar.tick(clock))
        screen = Rect(0, 0, self.width, self.height)
        merged = _merge([screen] if first else [r for r in (d.intersection(screen) for d in damage) if r is not None])
        for rect in merged:
            self._compose(rect)
        stamp = Rect(0, 0, self.width, stamp_rows(self.width))
        draw_stamp(self.pixels, Stamp(frame=number, time_ms=int(time.time() * 1000)))
        self._drawn = number
        return tuple(_merge([*merged, stamp]))

    def cursor(self, pointer: PointerEvent | None) -> Cursor:
        """The pointer as a cursor plane: the viewer's, or the scripted user's until a viewer moves one."""
        if pointer is not None:
            x, y = round(pointer.x * (self.width - 1)), round(pointer.y * (self.height - 1))
        else:
            x, y = self.hand
        return Cursor(image=ARROW, hot_x=0, hot_y=0, x=x, y=y, visible=True, serial=1)

    def _clicks(self, viewer: ViewerInput) -> list[Rect]:
        """Focus (and raise) the window under each click; the screen rectangles that changed."""
        damage: list[Rect] = []
        for fx, fy in viewer.clicks:
            spot = Rect(round(fx * (self.width - 1)), round(fy * (self.height - 1)), 1, 1)
            hit = next((w for w in reversed(self.stack) if w.rect.intersection(spot)), None)
            if hit is None or hit is self.focused:
                continue
            self.focused.draw_frame(False)
            damage.append(self.focused.rect)
            self.focused = hit
            self.stack.remove(hit)
            self.stack.append(hit)
            hit.draw_frame(True)
            damage += [hit.rect, self.taskbar.draw(self.stack, hit).moved(self.taskbar.rect.x, self.taskbar.rect.y)]
        return damage

    def _drag(self, number: int) -> list[Rect]:
        """Move the notes window to where picture `number` has it; the screen rectangles that changed."""
        period, takes = round(DRAG_EVERY * self.fps), max(1, round(DRAG_TAKES * self.fps))
        drags, into = divmod(number + period // 3, period)  # the first drag two thirds of a period in
        start, end = (self._drag_from, self._drag_to) if drags % 2 == 0 else (self._drag_to, self._drag_from)
        t = min(into, takes) / takes
        t = t * t * (3 - 2 * t)  # eased, as a hand moves
        rect = Rect(
            round(start.x + (end.x - start.x) * t), round(start.y + (end.y - start.y) * t), start.width, start.height
        )
        if rect == self.notes.rect:
            return []
        old, self.notes.rect = self.notes.rect, rect
        self.hand = (rect.x + rect.width // 2, rect.y + self.notes.content.y // 2)
        return [old, rect]

    def _compose(self, rect: Rect) -> None:
        """Compose `rect` of the screen again: the wallpaper, the windows bottom to top, the taskbar."""
        self.pixels[rect.slices] = self.wallpaper[rect.slices]
        for layer in (*self.stack, self.taskbar):
            part = rect.intersection(layer.rect)
            if part is not None:
                self.pixels[part.slices] = layer.surface[part.moved(-layer.rect.x, -layer.rect.y).slices]


def _title(focused: bool) -> tuple[int, int, int]:
    return TITLE_FOCUSED if focused else TITLE_UNFOCUSED


def _part(area: Rect, x: float, y: float, width: float, height: float) -> Rect:
    """The rectangle at fractions of `area`, at least 16 pixels each way."""
    return Rect(
        area.x + round(area.width * x),
        area.y + round(area.height * y),
        max(16, round(area.width * width)),
        max(16, round(area.height * height)),
    )


def _on_screen(layer: Window | Taskbar, rects: list[Rect]) -> list[Rect]:
    """Surface rectangles of `layer` as screen rectangles."""
    return [rect.moved(layer.rect.x, layer.rect.y) for rect in rects]


def _merge(rects: list[Rect]) -> list[Rect]:
    """The rectangles, those that overlap replaced by the least rectangle covering them where that covers
    no more than they do apart (else the overlap is composed twice, which costs less than what lies between)."""
    merged: list[Rect] = []
    for rect in rects:
        cover = rect
        while (other := next((m for m in merged if _worth_merging(m, cover)), None)) is not None:
            merged.remove(other)
            cover = cover.bounds(other)
        merged.append(cover)
    return merged


def _worth_merging(a: Rect, b: Rect) -> bool:
    return a.intersection(b) is not None and a.bounds(b).area <= a.area + b.area


def _wallpaper(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth wallpaper in two colours the seed picks, with soft diagonal bands (cheap to encode).
    Drawn a row at a time, so that even the largest picture needs no more than itself."""
    top, bottom = rng.integers(40, 200, size=(2, 3))
    period = max(64, width // 2)
    bands = (np.sin(np.arange(period) * 2 * np.pi / period + rng.uniform(0, 2 * np.pi)) * 16).astype(np.int16)
    columns = np.arange(width)
    picture = np.empty((height, width, 4), dtype=np.uint8)
    picture[:, :, 3] = 0xFF
    for row in range(height):
        colour = (top * (height - row) + bottom * row) // height
        picture[row, :, :3] = np.clip(colour[None, :] + bands[(columns + row) % period, None], 0, 255)
    return picture


def _words(rng: np.random.Generator, length: int) -> str:
    """Made-up lowercase words, a line of at most `length` characters."""
    words: list[str] = []
    while True:
        word = "".join(chr(c) for c in rng.integers(ord("a"), ord("z") + 1, size=rng.integers(2, 9)))
        if sum(len(w) + 1 for w in words) + len(word) > length:
            return " ".join(words)
        words.append(word)


def _session(rng: np.random.Generator) -> Iterator[tuple[float, str]]:
    """The scripted user's terminal session: (seconds to wait, then text to write), typed a key at a time."""
    yield 0.0, PROMPT
    while True:
        command, output = _command(rng)
        for i, char in enumerate(command):
            yield float(rng.uniform(1.0, 3.0) if i == 0 else rng.uniform(0.06, 0.22)), char
        yield float(rng.uniform(0.1, 0.4)), "\n"
        yield float(rng.uniform(0.1, 0.5)), "".join(line + "\n" for line in output) + PROMPT


def _command(rng: np.random.Generator) -> tuple[str, list[str]]:
    """A command the scripted user types, and what it prints."""
    number = [int(n) for n in rng.integers(1, 99, size=4)]
    kind = int(rng.integers(0, 5))
    if kind == 0:
        return "ls", ["  ".join(_words(rng, 40).split()), "Makefile  README.md  build  src"]
    if kind == 1:
        load = ", ".join(f"0.{n:02d}" for n in number[1:])
        return "uptime", [f" up {number[0]} days,  2 users,  load average: {load}"]
    if kind == 2:
        return "df -h /", [
            "Filesystem  Size  Used Avail Use%",
            f"/dev/vda1    40G   {number[0] % 40}G  {40 - number[0] % 40}G",
        ]
    if kind == 3:
        return "git log --oneline -3", [
            f"{int(rng.integers(1 << 27, 1 << 28)):07x} {_words(rng, 30)}" for _ in range(3)
        ]
    return "ping -c 2 10.0.2.2", [
        f"64 bytes from 10.0.2.2: icmp_seq={i} ttl=64 time=0.{n} ms" for i, n in enumerate(number[:2], 1)
    ]
