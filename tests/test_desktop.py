"""The synthetic desktop: seeded pictures, damage that covers every change, typing and clicks."""

from __future__ import annotations

import time

import numpy as np
import pytest

from vgpustream.capture.pipeline import FramePipeline
from vgpustream.input.events import KeyEvent, PointerEvent
from vgpustream.media.encoder import EncoderSettings
from vgpustream.media.stamp import read_stamp, stamp_rows
from vgpustream.sources import create_source
from vgpustream.sources.base import Rect
from vgpustream.sources.desktop import DRAG_EVERY, DRAG_TAKES, PROMPT, TITLE_FOCUSED, TITLE_UNFOCUSED, Desktop
from vgpustream.sources.font import text_ink
from vgpustream.sources.pattern import ViewerInput
from vgpustream.sources.synthetic import SyntheticSource

FPS = 30


def drawn(desktop: Desktop, numbers: range) -> np.ndarray:
    for number in numbers:
        desktop.draw(number, ViewerInput())
    return desktop.pixels[stamp_rows(desktop.width) :].copy()  # the stamp holds the wall-clock time


def test_the_same_seed_draws_the_same_pictures_and_another_seed_others():
    numbers = range(0, 20 * FPS, 7)
    first, again, other = (Desktop(640, 360, FPS, seed=seed) for seed in (5, 5, 6))
    picture = drawn(first, numbers)
    assert np.array_equal(picture, drawn(again, numbers))
    assert first.terminal.lines == again.terminal.lines and len(first.terminal.lines) > 3, "the script typed"
    assert not np.array_equal(picture, drawn(other, numbers))
    assert first.terminal.lines != other.terminal.lines


def unchanged_outside(before: np.ndarray, after: np.ndarray, damage: tuple[Rect, ...]) -> bool:
    changed = np.any(before != after, axis=2)
    for rect in damage:
        changed[rect.slices] = False
    return not changed.any()


@pytest.mark.parametrize("width, height, step", [(1280, 720, 1), (640, 360, 3), (1920, 1080, 2)])
def test_the_damage_covers_every_changed_pixel_and_a_few_percent_of_the_picture(width, height, step):
    desktop = Desktop(width, height, FPS)
    assert desktop.draw(0, ViewerInput()) == (Rect(0, 0, width, height),), "the first picture is all new"
    areas = []
    for number in range(step, 2 * round(DRAG_EVERY * FPS), step):  # two drags and three scrolls
        before = desktop.pixels.copy()
        damage = desktop.draw(number, ViewerInput())
        assert unchanged_outside(before, desktop.pixels, damage), f"a change outside the damage at {number}"
        assert all(Rect(0, 0, width, height).intersection(r) == r for r in damage), "damage lies in the picture"
        assert read_stamp(desktop.pixels[:, :, 1]).frame == number
        areas.append(sum(rect.area for rect in damage) / (width * height))
    assert 0.01 < np.mean(areas) < 0.15, f"on average {np.mean(areas):.1%} of the picture changed"
    assert np.median(areas) < 0.1, "most pictures change the stamp, the video and a line of the terminal"


def test_nothing_new_is_no_damage():
    desktop = Desktop(320, 240, FPS)
    desktop.draw(4, ViewerInput())
    assert desktop.draw(4, ViewerInput(pointer=PointerEvent(0.5, 0.5, 0))) == (), "the pointer is a cursor plane"


def terminal_shows(desktop: Desktop, text: str) -> bool:
    """Whether the terminal's cursor line ends with `text`, drawn on the screen in the terminal's glyphs."""
    terminal = desktop.terminal
    if not terminal.lines[-1].endswith(text):
        return False
    face, column = terminal.face, len(terminal.lines[-1]) - len(text)
    x = terminal.rect.x + terminal.content.x + column * face.cell_w
    y = terminal.rect.y + terminal.content.y + (len(terminal.lines) - 1) * face.cell_h
    ink = text_ink(text, face.scale)
    shown = desktop.pixels[y : y + ink.shape[0], x : x + ink.shape[1]]
    return bool(np.array_equal(shown, np.where(ink[:, :, None], face.ink, face.paper)))


def test_typed_text_is_drawn_in_the_terminal_and_the_script_waits():
    desktop = Desktop(1280, 720, FPS)
    desktop.draw(0, ViewerInput())
    desktop.draw(1, ViewerInput(typed="\nEcho Zebra-42"))
    assert terminal_shows(desktop, "Echo Zebra-42")
    assert not terminal_shows(desktop, "Echo Zebra-43"), "the check can fail"
    drawn(desktop, range(2, 4 * FPS))  # the scripted user waits while a viewer types
    assert terminal_shows(desktop, "Echo Zebra-42")
    desktop.draw(4 * FPS, ViewerInput(typed="\b\b7"))
    assert terminal_shows(desktop, "Echo Zebra-7")


def test_keys_sent_to_the_source_type_with_shift_enter_and_backspace():
    source = SyntheticSource(640, 360, still=True)
    sink = source.input_sink
    source.next_frame()
    keys = [("ShiftLeft", True), ("KeyH", True), ("KeyH", False), ("ShiftLeft", False), ("KeyI", True),
            ("Digit1", True), ("KeyX", True), ("Backspace", True), ("F5", True), ("Enter", True)]  # fmt: skip
    for code, down in keys:
        sink.send(KeyEvent(code, down))
    assert source.next_frame() is not None
    assert source.pattern.terminal.lines[-2:] == [PROMPT + "Hi1", ""]
    assert source.next_frame() is None, "still: nothing new without input"


def title_colour(desktop: Desktop, window) -> tuple[int, ...]:
    return tuple(desktop.pixels[window.rect.y + 2, window.rect.x + window.rect.width - 4, :3])


def test_a_click_focuses_and_raises_the_window_under_it():
    desktop = Desktop(1280, 720, FPS)
    desktop.draw(0, ViewerInput())
    document, terminal = desktop.document, desktop.terminal
    assert title_colour(desktop, terminal) == TITLE_FOCUSED and title_colour(desktop, document) == TITLE_UNFOCUSED
    spot = document.rect.x + 8, document.rect.y + document.rect.height - 8  # where no other window lies
    click = (spot[0] / (1280 - 1), spot[1] / (720 - 1))
    damage = desktop.draw(1, ViewerInput(clicks=(click,)))
    assert desktop.stack[-1] is document and desktop.focused is document
    assert title_colour(desktop, terminal) == TITLE_UNFOCUSED and title_colour(desktop, document) == TITLE_FOCUSED
    assert any(rect.intersection(document.rect) == document.rect for rect in damage)
    wallpaper = (0.99, 0.02 + stamp_rows(1280) / 720)  # a click on no window changes nothing
    desktop.draw(2, ViewerInput(clicks=(wallpaper,)))
    assert desktop.focused is document


def test_the_notes_window_is_dragged_and_the_scripted_pointer_holds_it():
    desktop = Desktop(1280, 720, FPS)
    desktop.draw(0, ViewerInput())
    start, number = desktop.notes.rect, 1
    while desktop.notes.rect == start:
        assert number < DRAG_EVERY * FPS, "dragged every DRAG_EVERY seconds"
        desktop.draw(number, ViewerInput())
        number += 1
    moving = desktop.notes.rect
    assert (moving.width, moving.height) == (start.width, start.height)
    cursor = desktop.cursor(None)
    assert cursor.visible and moving.intersection(Rect(cursor.x, cursor.y, 1, 1)), "the pointer is on its title bar"
    desktop.draw(number + round(DRAG_TAKES * FPS), ViewerInput())
    moved = desktop.notes.rect
    assert abs(moved.x - start.x) + abs(moved.y - start.y) > 100, "dragged across the screen"
    desktop.draw(number + round(DRAG_EVERY * FPS) + round(DRAG_TAKES * FPS), ViewerInput())
    assert desktop.notes.rect == start, "and back"
    viewer = desktop.cursor(PointerEvent(0.5, 0.25, 0))
    assert (viewer.x, viewer.y) == (640, 180) and viewer.image is not None


@pytest.mark.parametrize("width, height", [(192, 64), (8192, 64), (192, 4096), (322, 242)])
def test_every_size_the_source_takes_draws(width, height):
    desktop = Desktop(width, height, FPS)
    for number in (0, 1, round(DRAG_TAKES * FPS), round(DRAG_EVERY * FPS) + 5):
        before = desktop.pixels.copy()
        damage = desktop.draw(number, ViewerInput(typed="x" * 80 + "\n"))
        assert damage and unchanged_outside(before, desktop.pixels, damage)


def test_the_desktop_is_the_default_and_its_frames_carry_damage():
    frame = create_source("synthetic:640x360@30").next_frame()
    assert frame is not None and frame.damage == (Rect(0, 0, 640, 360),)
    text = create_source("synthetic:640x360@30?pattern=text")
    assert text.next_frame().damage == (Rect(0, 0, 640, 360),)
    assert text.cursor() is None, "the text page draws its pointer into the picture"


def test_the_pipeline_counts_the_pixels_captured_and_those_changed():
    pipeline = FramePipeline(SyntheticSource(640, 360, fps=960), EncoderSettings())
    first = pipeline.capture().result
    assert first.captured and first.changed == first.pixels == 640 * 360, "the first picture is all new"
    time.sleep(0.01)
    later = pipeline.capture().result
    assert later.captured and 0 < later.changed < later.pixels / 4
    text = FramePipeline(SyntheticSource(640, 360, fps=960, pattern="text"), EncoderSettings())
    text.capture()
    time.sleep(0.01)
    moved = text.sample()
    assert moved.captured and moved.changed == moved.pixels == 640 * 360, "the text page changes all of itself"
