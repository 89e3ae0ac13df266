"""`vgpustream bench quality`: how sharp the picture a viewer decodes is, moving and when it stops.

The real pipeline (capture, convert, encode, keyframe policy, refinement) runs on the synthetic
source in real time: the picture moves for `moving` seconds, then stands still. Every packet is
decoded as a watching viewer would, and as a viewer joining once the picture stood still would (from
the last keyframe on, which is what a joining viewer is replayed). Each decoded frame is compared
with the picture the encoder was given: luma PSNR in dB.
"""

from __future__ import annotations

import time
from typing import Any

import av
import numpy as np

from vgpustream.audience.publisher import REPLAY_LIMIT
from vgpustream.capture.convert import FrameConverter
from vgpustream.capture.keyframes import KeyframePolicy
from vgpustream.capture.pipeline import FramePipeline
from vgpustream.media.encoder import EncoderSettings
from vgpustream.media.formats import DRM_FORMAT_XRGB8888
from vgpustream.sources.base import Frame
from vgpustream.sources.synthetic import SyntheticSource

SHARP_DB = 45.0


def luma(picture: av.VideoFrame) -> np.ndarray:
    plane = picture.planes[0]
    return np.frombuffer(plane, dtype=np.uint8).reshape(picture.height, plane.line_size)[:, : picture.width]


def psnr(decoded: np.ndarray, expected: np.ndarray) -> float:
    diff = decoded.astype(np.float32) - expected
    return round(float(10 * np.log10(255 * 255 / max(float(np.mean(diff * diff)), 1e-9))), 2)


class Viewer:
    """A decoder fed every packet from some point on, scoring each frame against what was encoded."""

    def __init__(self) -> None:
        self._decoder = av.CodecContext.create("h264", "r")
        self._decoder.thread_count = 1  # one frame out per packet in, as a low-latency viewer

    def decode(self, packets: list[av.Packet], expected: np.ndarray) -> float | None:
        pictures = [picture for packet in packets for picture in self._decoder.decode(packet)]
        return psnr(luma(pictures[-1]), expected) if pictures else None


def measure(width: int, height: int, settings: EncoderSettings, moving: float, still: float) -> dict[str, Any]:
    source = SyntheticSource(width, height, settings.fps, pattern="text")
    pipeline = FramePipeline(source, settings)
    keyframes = KeyframePolicy(settings.keyframe_interval)
    reference = FrameConverter()
    watcher = Viewer()
    since_keyframe: list[av.Packet] = []
    moving_db: list[float] = []
    still_db: list[tuple[float, float]] = []
    still_bytes = moving_bytes = 0
    expected = np.zeros((height, width), dtype=np.float32)
    start = time.monotonic()
    stopped_at = start + moving
    while (now := time.monotonic()) < stopped_at + still:
        if now >= stopped_at:
            source.still = True
        keyframe, periodic = keyframes.due(now)
        result = pipeline.step(keyframe, periodic=periodic)
        if result.captured:
            frame = Frame(source.pixels, DRM_FORMAT_XRGB8888, 0.0)
            expected = luma(reference.convert(frame)).astype(np.float32)
        if result.packets:
            if any(packet.is_keyframe for packet in result.packets):
                keyframes.sent(now)
                since_keyframe = []
            since_keyframe += result.packets
            size = sum(packet.size for packet in result.packets)
            quality = watcher.decode(result.packets, expected)
            if now < stopped_at:
                moving_bytes += size
                if quality is not None:
                    moving_db.append(quality)
            else:
                still_bytes += size
                if quality is not None:
                    still_db.append((round(now - stopped_at, 3), quality))
        time.sleep(max(0.0, 1 / settings.fps - (time.monotonic() - now)))
    joiner = Viewer().decode(since_keyframe, expected)
    sharp = next((t for t, db in still_db if db >= SHARP_DB), None)
    return {
        "resolution": f"{width}x{height}",
        "bitrate": settings.bitrate,
        "moving": {
            "seconds": moving,
            "psnr_db_p50": round(float(np.percentile(moving_db, 50)), 2) if moving_db else None,
            "psnr_db_min": min(moving_db, default=None),
            "kbit_per_s": round(moving_bytes * 8 / moving / 1000),
        },
        "still": {
            "frames_after_stop": len(still_db),
            "kbytes_after_stop": round(still_bytes / 1000),
            "psnr_db_first": still_db[0][1] if still_db else None,
            "psnr_db_final": still_db[-1][1] if still_db else None,
            "seconds_to_sharp": sharp,
            "trace": still_db,
            "joiner_replayed_packets": len(since_keyframe),
            "joiner_psnr_db": joiner if len(since_keyframe) <= REPLAY_LIMIT else None,
            # past the replay limit a joiner is sent a new keyframe instead
        },
    }


def run(resolutions: list[tuple[int, int]], settings: EncoderSettings, moving: float, still: float) -> dict[str, Any]:
    return {
        "sharp_db": SHARP_DB,
        "runs": [measure(width, height, settings, moving, still) for width, height in resolutions],
    }
