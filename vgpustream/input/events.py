"""The input protocol: JSON messages on the `input` data channel, validated into typed events.

    {"type": "key", "code": <KeyboardEvent.code>, "down": bool}
    {"type": "pointer", "x": 0..1, "y": 0..1, "buttons": <bitmask, bit 0 = primary>}
    {"type": "wheel", "dx": int, "dy": int}
    {"type": "motion", "dx": int, "dy": int, "buttons"?: bitmask}   (relative motion in guest pixels, pointer lock)
    {"type": "resize", "width": int, "height": int, "scale": number}   (a display size for the guest)
    {"type": "delay", "ms": [number, ...]}   (glass-to-glass delays the viewer measured, for /metrics)

Anything else is rejected with InvalidInput; the caller drops it and counts it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

MAX_MESSAGE_BYTES = 512
MAX_WHEEL_STEP = 10_000
MAX_BUTTONS = 0xFF
MAX_MOTION_STEP = 4096
MAX_DISPLAY_EDGE = 16384
"""The largest width or height a resize message may ask for; the source bounds it further."""
MIN_DISPLAY_EDGE = 64
MIN_SCALE, MAX_SCALE = 0.25, 8.0
MAX_DELAY_SAMPLES = 64
"""The most delays one message may report (the console sends about a second's frames at a time)."""
MAX_DELAY_MS = 60_000.0
"""The devicePixelRatio a resize message may give (browsers zoom from 25 % to 500 %)."""
_KEY_CODE = re.compile(r"[A-Za-z][A-Za-z0-9]{0,31}")


def has_type(message: str | bytes, kind: str) -> bool:
    """Whether a message starts as a JSON object of type `kind` (`{"type": "<kind>"`), read from its head only."""
    head = message[:64].encode(errors="replace") if isinstance(message, str) else message[:64]
    return re.match(rb'\s*\{\s*"type"\s*:\s*"' + re.escape(kind.encode()) + rb'"', head) is not None


class InvalidInput(ValueError):
    """A data-channel message that is not a valid input event."""


@dataclass(frozen=True)
class KeyEvent:
    code: str
    down: bool


@dataclass(frozen=True)
class PointerEvent:
    x: float
    y: float
    buttons: int


@dataclass(frozen=True)
class WheelEvent:
    dx: int
    dy: int


@dataclass(frozen=True)
class MotionEvent:
    dx: int
    dy: int
    buttons: int | None = None
    """The buttons held, where the message says (else as they were)."""


InputEvent = KeyEvent | PointerEvent | WheelEvent | MotionEvent
"""An event for the guest's keyboard or mouse (the source's input sink)."""


@dataclass(frozen=True)
class ResizeEvent:
    """A display size the viewer asks the guest for, in device pixels, and the viewer's devicePixelRatio."""

    width: int
    height: int
    scale: float = 1.0


@dataclass(frozen=True)
class DelayReport:
    """Glass-to-glass delays (milliseconds) a viewer measured: a frame's capture time (abs-capture-time)
    to the time its browser expected to show it."""

    ms: tuple[float, ...]


Message = InputEvent | ResizeEvent | DelayReport


def json_object(message: str | bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> dict[str, object]:
    """A data-channel message as a JSON object; InvalidInput if it is longer than `max_bytes` or not one."""
    if len(message) > max_bytes:
        raise InvalidInput("message too long")
    try:
        data = json.loads(message)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidInput("not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidInput("not a JSON object")
    return data


def parse_input(message: str | bytes) -> Message:
    """Validate one data-channel message and return the event it describes."""
    data = json_object(message)
    kind = data.get("type")
    if kind == "key":
        return KeyEvent(code=_key_code(data.get("code")), down=_bool(data, "down"))
    if kind == "pointer":
        buttons = _int(data, "buttons", 0, MAX_BUTTONS)
        return PointerEvent(x=_unit(data, "x"), y=_unit(data, "y"), buttons=buttons)
    if kind == "wheel":
        return WheelEvent(
            dx=_int(data, "dx", -MAX_WHEEL_STEP, MAX_WHEEL_STEP),
            dy=_int(data, "dy", -MAX_WHEEL_STEP, MAX_WHEEL_STEP),
        )
    if kind == "motion":
        return MotionEvent(
            dx=_int(data, "dx", -MAX_MOTION_STEP, MAX_MOTION_STEP),
            dy=_int(data, "dy", -MAX_MOTION_STEP, MAX_MOTION_STEP),
            buttons=_int(data, "buttons", 0, MAX_BUTTONS) if "buttons" in data else None,
        )
    if kind == "resize":
        return ResizeEvent(
            width=_int(data, "width", MIN_DISPLAY_EDGE, MAX_DISPLAY_EDGE),
            height=_int(data, "height", MIN_DISPLAY_EDGE, MAX_DISPLAY_EDGE),
            scale=_number(data, "scale", MIN_SCALE, MAX_SCALE),
        )
    if kind == "delay":
        samples = data.get("ms")
        if not isinstance(samples, list) or not 0 < len(samples) <= MAX_DELAY_SAMPLES:
            raise InvalidInput(f"ms must be a list of 1 to {MAX_DELAY_SAMPLES} numbers")
        return DelayReport(tuple(_within(value, "ms", 0.0, MAX_DELAY_MS) for value in samples))
    raise InvalidInput("unknown type")


def _key_code(value: object) -> str:
    if not isinstance(value, str) or not _KEY_CODE.fullmatch(value):
        raise InvalidInput("code must be a KeyboardEvent.code")
    return value


def _bool(data: dict[str, object], name: str) -> bool:
    value = data.get(name)
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be a boolean")
    return value


def _int(data: dict[str, object], name: str, low: int, high: int) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{name} must be an integer in [{low}, {high}]")
    return value


def _unit(data: dict[str, object], name: str) -> float:
    return _number(data, name, 0.0, 1.0)


def _number(data: dict[str, object], name: str, low: float, high: float) -> float:
    return _within(data.get(name), name, low, high)


def _within(value: object, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{name} must be a number")
    if not low <= value <= high:  # compared before any float(): an integer past 1e308 has none
        raise InvalidInput(f"{name} must be within [{low:g}, {high:g}]")
    return float(value)
