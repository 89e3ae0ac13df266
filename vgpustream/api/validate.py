"""Checking the fields of JSON request bodies; every failure names the field and what it must be."""

from __future__ import annotations

import re
from typing import Any

from vgpustream.encoder import EncoderSettings
from vgpustream.errors import VgpuStreamError
from vgpustream.input import MAX_DISPLAY_EDGE, MAX_SCALE, MIN_DISPLAY_EDGE, MIN_SCALE, ResizeEvent

LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}")
MAX_LABELS = 32
MAX_LABEL_VALUE = 256
MAX_NAME = 200


def string(body: dict[str, Any], key: str, max_length: int, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or not value.isprintable() or len(value) > max_length:
        raise VgpuStreamError(f"'{key}' must be printable text of at most {max_length} characters")
    return value


def integer(body: dict[str, Any], key: str, low: int, high: int, default: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise VgpuStreamError(f"'{key}' must be an integer within {low}..{high}")
    return value


def number(body: dict[str, Any], key: str, low: float, high: float, default: float) -> float:
    """A number within low..high; range-checked before float(), which fails on integers past 1e308."""
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise VgpuStreamError(f"'{key}' must be a number within {low:g}..{high:g}")
    return float(value)


def boolean(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise VgpuStreamError(f"'{key}' must be true or false")
    return value


def choice(body: dict[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
    value = body.get(key, default)
    if value not in choices:
        raise VgpuStreamError(f"'{key}' must be one of {', '.join(choices)}")
    return value


def labels(body: dict[str, Any], default: dict[str, str]) -> dict[str, str]:
    value = body.get("labels", default)
    if not isinstance(value, dict) or len(value) > MAX_LABELS:
        raise VgpuStreamError(f"'labels' must be an object of at most {MAX_LABELS} entries")
    for key, text in value.items():
        if not LABEL_KEY.fullmatch(key) or not isinstance(text, str) or len(text) > MAX_LABEL_VALUE:
            raise VgpuStreamError(
                f"label keys must match {LABEL_KEY.pattern} and values be text of at most {MAX_LABEL_VALUE} characters"
            )
    return dict(value)


def encoder(body: dict[str, Any], default: EncoderSettings) -> EncoderSettings:
    """Encoder settings from body['encoder'], each missing field taken from `default`."""
    value = body.get("encoder", {})
    if not isinstance(value, dict):
        raise VgpuStreamError("'encoder' must be an object")
    unknown = set(value) - {"bitrate", "fps", "keyframe_interval"}
    if unknown:
        raise VgpuStreamError("'encoder' takes only bitrate, fps and keyframe_interval")
    return EncoderSettings(
        bitrate=integer(value, "bitrate", 100_000, 100_000_000, default.bitrate),
        fps=integer(value, "fps", 1, 120, default.fps),
        keyframe_interval=number(value, "keyframe_interval", 0.5, 60.0, default.keyframe_interval),
    )


def display(body: dict[str, Any]) -> ResizeEvent | None:
    """A display size from body['display'] ({"width", "height", "scale"?}), or None without one."""
    if "display" not in body:
        return None
    value = body["display"]
    if not isinstance(value, dict) or not {"width", "height"} <= set(value) <= {"width", "height", "scale"}:
        raise VgpuStreamError("'display' must be an object with width, height and optionally scale")
    return ResizeEvent(
        width=integer(value, "width", MIN_DISPLAY_EDGE, MAX_DISPLAY_EDGE, 0),
        height=integer(value, "height", MIN_DISPLAY_EDGE, MAX_DISPLAY_EDGE, 0),
        scale=number(value, "scale", MIN_SCALE, MAX_SCALE, 1.0),
    )
