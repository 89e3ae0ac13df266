"""The input protocol: JSON messages on the `input` data channel, validated into typed events.

    {"type": "key", "code": <KeyboardEvent.code>, "down": bool}
    {"type": "pointer", "x": 0..1, "y": 0..1, "buttons": <bitmask, bit 0 = primary>}
    {"type": "wheel", "dx": int, "dy": int}

Anything else is rejected with InvalidInput; the caller drops it and counts it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

MAX_MESSAGE_BYTES = 512
MAX_WHEEL_STEP = 10_000
MAX_BUTTONS = 0xFF
_KEY_CODE = re.compile(r"[A-Za-z][A-Za-z0-9]{0,31}")


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


InputEvent = KeyEvent | PointerEvent | WheelEvent


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


def parse_input(message: str | bytes) -> InputEvent:
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
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{name} must be a number")
    if not 0.0 <= value <= 1.0:  # compared before any float(): an integer past 1e308 has none
        raise InvalidInput(f"{name} must be within [0, 1]")
    return float(value)
