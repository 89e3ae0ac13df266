"""The guest's cursor for viewers: sent as messages on the input channel, or drawn into the picture.

Viewers with an `input` data channel get `{"type": "cursor", ...}` messages and draw the cursor
themselves (the image only when it changes). While any viewer has no data channel, the session
draws the cursor into the one shared picture instead, and tells the others (`"composited": true`)
so that nobody sees two cursors.
"""

from __future__ import annotations

import base64
import json

import av
import numpy as np

from vgpustream.sources.base import Cursor

# BT.601 limited range, the matrix swscale uses for the picture itself
_Y = np.array([0.098, 0.504, 0.257], dtype=np.float32)  # B, G, R
_U = np.array([0.439, -0.291, -0.148], dtype=np.float32)
_V = np.array([-0.071, -0.368, 0.439], dtype=np.float32)


def cursor_key(cursor: Cursor | None) -> tuple[int, int, int, bool] | None:
    """What decides whether a cursor looks different: image serial, position, visibility."""
    return None if cursor is None else (cursor.serial, cursor.x, cursor.y, cursor.visible)


def png_data_url(image: np.ndarray) -> str:
    """A BGRA image as a data: URL of a PNG."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:, :, [2, 1, 0, 3]]), format="rgba")
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = frame.width, frame.height, "rgba"
    data = b"".join(bytes(packet) for packet in codec.encode(frame))
    return "data:image/png;base64," + base64.b64encode(data).decode()


def cursor_message(cursor: Cursor, image_url: str | None, composited: bool) -> str:
    """The JSON text of a cursor message; `image_url` only when the viewer lacks this image."""
    message: dict[str, object] = {
        "type": "cursor",
        "visible": cursor.visible,
        "x": cursor.x,
        "y": cursor.y,
        "hot_x": cursor.hot_x,
        "hot_y": cursor.hot_y,
        "serial": cursor.serial,
        "composited": composited,
    }
    if cursor.image is not None:
        message["width"], message["height"] = int(cursor.image.shape[1]), int(cursor.image.shape[0])
    if image_url is not None:
        message["image"] = image_url
    return json.dumps(message)


def draw_cursor(picture: av.VideoFrame, cursor: Cursor) -> av.VideoFrame:
    """A copy of a yuv420p picture with the cursor alpha-blended in at (x, y), clipped to the picture."""
    out = av.VideoFrame(picture.width, picture.height, "yuv420p")
    planes = [_plane(picture, i) for i in range(3)]
    targets = [_plane(out, i) for i in range(3)]
    for source, target in zip(planes, targets, strict=True):
        target[:] = source
    if not cursor.visible or cursor.image is None:
        return out
    # the cursor is placed on even coordinates so that its chroma lines up with the picture's
    x, y = cursor.x & ~1, cursor.y & ~1
    image = cursor.image[: cursor.image.shape[0] & ~1, : cursor.image.shape[1] & ~1]
    top, left = max(0, -y), max(0, -x)
    bottom = min(image.shape[0], picture.height - y)
    right = min(image.shape[1], picture.width - x)
    if top >= bottom or left >= right:
        return out
    part = image[top:bottom, left:right].astype(np.float32)
    bgr, alpha = part[:, :, :3], part[:, :, 3:] / 255
    luma = targets[0][y + top : y + bottom, x + left : x + right]
    luma[:] = (luma * (1 - alpha[:, :, 0]) + (16 + bgr @ _Y) * alpha[:, :, 0]).astype(np.uint8)
    half = bgr.reshape(bgr.shape[0] // 2, 2, bgr.shape[1] // 2, 2, 3).mean(axis=(1, 3))
    half_alpha = alpha.reshape(alpha.shape[0] // 2, 2, alpha.shape[1] // 2, 2).mean(axis=(1, 3))
    rows = slice((y + top) // 2, (y + bottom) // 2)
    cols = slice((x + left) // 2, (x + right) // 2)
    for target, weights in ((targets[1], _U), (targets[2], _V)):
        region = target[rows, cols]
        region[:] = (region * (1 - half_alpha) + (128 + half @ weights) * half_alpha).astype(np.uint8)
    return out


def _plane(frame: av.VideoFrame, index: int) -> np.ndarray:
    plane = frame.planes[index]
    height = frame.height if index == 0 else frame.height // 2
    width = frame.width if index == 0 else frame.width // 2
    return np.frombuffer(plane, dtype=np.uint8).reshape(height, plane.line_size)[:, :width]
