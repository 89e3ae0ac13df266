"""CPU detiling of Intel X- and Y-tiled framebuffers (DRM modifiers I915_FORMAT_MOD_{X,Y}_TILED).

X tiles are 512 bytes by 8 rows, stored row by row. (Legacy) Y tiles are 128 bytes by 32 rows,
stored as eight 16-byte-wide columns of 32 rows each. Tiles follow each other left to right, then
top to bottom; the stride is a whole number of tiles.
"""

from __future__ import annotations

import numpy as np

from vgpustream.errors import InvalidPlane

DRM_FORMAT_MOD_VENDOR_INTEL = 0x01
I915_FORMAT_MOD_X_TILED = DRM_FORMAT_MOD_VENDOR_INTEL << 56 | 1
I915_FORMAT_MOD_Y_TILED = DRM_FORMAT_MOD_VENDOR_INTEL << 56 | 2

# modifier -> (tile width in bytes, tile height in rows)
TILES = {I915_FORMAT_MOD_X_TILED: (512, 8), I915_FORMAT_MOD_Y_TILED: (128, 32)}
Y_COLUMN = 16  # bytes per column of a Y tile


def tiled_size(modifier: int, stride: int, height: int) -> int:
    """Bytes a tiled buffer of `height` rows occupies (whole tile rows)."""
    _, rows = TILES[modifier]
    return stride * -(-height // rows) * rows


def detile(buffer: np.ndarray, modifier: int, stride: int, height: int) -> np.ndarray:
    """The linear (height, stride) bytes of a tiled buffer; `buffer` is 1-D uint8, tiled_size() long."""
    width, rows = TILES[modifier]
    if stride % width:
        raise InvalidPlane(f"a tiled plane's stride {stride} is not a multiple of its tile width {width}")
    tile_rows, tiles_across = -(-height // rows), stride // width
    tiles = buffer[: tile_rows * rows * stride].reshape(tile_rows, tiles_across, width * rows)
    if modifier == I915_FORMAT_MOD_X_TILED:
        # (tile row, tile, row, byte) -> (tile row, row, tile, byte)
        linear = tiles.reshape(tile_rows, tiles_across, rows, width).transpose(0, 2, 1, 3)
    else:
        # (tile row, tile, column, row, byte) -> (tile row, row, tile, column, byte)
        columns = width // Y_COLUMN
        linear = tiles.reshape(tile_rows, tiles_across, columns, rows, Y_COLUMN).transpose(0, 3, 1, 2, 4)
    return linear.reshape(tile_rows * rows, stride)[:height]
