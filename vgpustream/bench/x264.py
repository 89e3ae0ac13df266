"""`vgpustream bench x264`: x264 settings for screen content, the CPU they cost against how sharp they are.

The synthetic picture (`--pattern desktop` or `text`) is drawn and converted once; the same pictures are
then encoded with the session's own H.264 encoder and with each variant of its settings, in turn over
several rounds (so a drift of the machine's speed hits them all alike). Per variant: the CPU per encoded
frame (the process's CPU time, so all of x264's threads count), its ratio to the session's settings round
by round, the bits per second, and the luma PSNR of every decoded frame against the picture encoded. A
keyframe is forced every `keyframe_interval` as a session does; the first WARMUP frames of each encode
(its first IDR, x264's allocations) are left out of the CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np

from vgpustream.bench.quality import Viewer
from vgpustream.capture.convert import FrameConverter
from vgpustream.media.encoder import TIME_BASE, EncoderSettings, H264Encoder
from vgpustream.media.formats import DRM_FORMAT_XRGB8888
from vgpustream.sources.base import Frame
from vgpustream.sources.synthetic import SyntheticSource

WARMUP = 20


@dataclass(frozen=True)
class Variant:
    """A change to the session's x264 settings: options replaced (None: left out), x264-params appended."""

    name: str
    options: dict[str, str | None] = field(default_factory=dict)
    x264_params: str = ""
    other_thread_count: bool = False
    keyframe_interval: float | None = None


def variants(settings: EncoderSettings) -> list[Variant]:
    """The session's settings first, then the candidates: each either changes what ultrafast leaves on, or
    trades rate control or quality for CPU."""
    kbps = f"{settings.bitrate // 1000}k"
    constant_qp = {"crf": None, "maxrate": None, "bufsize": None}
    return [
        Variant("session"),
        Variant("tune stillimage", {"tune": "zerolatency,stillimage"}),
        Variant("aq-mode=1", x264_params="aq-mode=1"),
        Variant("deblock", x264_params="deblock=0,0"),
        Variant("subme=1", x264_params="subme=1"),
        Variant("crf 20", {"crf": "20"}),
        Variant("abr (no crf)", {"crf": None, "b": kbps}),
        Variant("cqp 16 (no cap)", {**constant_qp, "qp": "16"}),
        Variant("the other thread count", other_thread_count=True),
        Variant("keyframes every 10 s", keyframe_interval=10.0),
    ]


class VariantEncoder(H264Encoder):
    """The session's H.264 encoder with a variant's settings."""

    def __init__(self, settings: EncoderSettings, variant: Variant) -> None:
        super().__init__(settings)
        self.variant = variant

    def x264_options(self) -> dict[str, str]:
        options = super().x264_options()
        for name, value in self.variant.options.items():
            if value is None:
                options.pop(name, None)
            else:
                options[name] = value
        if self.variant.x264_params:
            options["x264-params"] += ":" + self.variant.x264_params
        return options

    def _create(self, name: str, width: int, height: int) -> av.VideoCodecContext:
        context = super()._create(name, width, height)
        if self.variant.other_thread_count:
            context.thread_count = 3 - context.thread_count  # one thread <-> two slices
        return context


@dataclass
class Encoded:
    """One encode of all the pictures with one variant: its CPU past the warm-up, its bits, its frames' PSNR."""

    cpu_ms_per_frame: float
    kbit_per_s: float
    psnr_db: list[float]


def encode(
    pictures: list[av.VideoFrame], lumas: list[np.ndarray], settings: EncoderSettings, variant: Variant
) -> Encoded:
    encoder = VariantEncoder(settings, variant)
    every = round((variant.keyframe_interval or settings.keyframe_interval) * settings.fps)
    packets: list[list[av.Packet]] = []
    started = 0.0
    for number, picture in enumerate(pictures):
        if number == WARMUP:
            started = time.process_time()
        packets.append(encoder.encode(picture, number * TIME_BASE.denominator // settings.fps, number % every == 0))
    cpu = time.process_time() - started
    encoder.close()
    viewer = Viewer()
    scores = [viewer.decode(sent, expected) for sent, expected in zip(packets, lumas, strict=True)]
    size = sum(packet.size for sent in packets for packet in sent)
    return Encoded(
        cpu_ms_per_frame=cpu * 1000 / (len(pictures) - WARMUP),
        kbit_per_s=size * 8 * settings.fps / len(pictures) / 1000,
        psnr_db=[score for score in scores if score is not None],
    )


def draw(width: int, height: int, pattern: str, frames: int) -> tuple[list[av.VideoFrame], list[np.ndarray]]:
    """`frames` pictures of the synthetic source, one per 1/30 s, as yuv420p and as float luma."""
    source = SyntheticSource(width, height, pattern=pattern)
    converter = FrameConverter(use_libyuv=False)  # a new picture for each frame, none reused
    pictures, lumas = [], []
    for number in range(frames):
        source.pattern.draw(number, source.input_sink.take())
        picture = converter.convert(Frame(source.pattern.pixels, DRM_FORMAT_XRGB8888, 0.0))
        pictures.append(picture)
        plane = picture.planes[0]
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(height, plane.line_size)[:, :width]
        lumas.append(rows.astype(np.float32))
    return pictures, lumas


def run(size: tuple[int, int], pattern: str, frames: int, rounds: int, settings: EncoderSettings) -> dict[str, Any]:
    width, height = size
    if frames <= WARMUP:
        raise ValueError(f"--frames must be more than the {WARMUP} left out as warm-up")
    pictures, lumas = draw(width, height, pattern, frames)
    tried = variants(settings)
    results: dict[str, list[Encoded]] = {variant.name: [] for variant in tried}
    for turn in range(rounds):
        for variant in tried if turn % 2 == 0 else tried[::-1]:
            results[variant.name].append(encode(pictures, lumas, settings, variant))
    session = results["session"]
    rows = []
    for variant in tried:
        runs = results[variant.name]
        ratios = sorted(mine.cpu_ms_per_frame / base.cpu_ms_per_frame for mine, base in zip(runs, session, strict=True))
        scores = runs[0].psnr_db  # the same stream every round
        rows.append(
            {
                "variant": variant.name,
                "cpu_ms_per_frame_p50": round(float(np.median([r.cpu_ms_per_frame for r in runs])), 3),
                "cpu_to_session_p50": round(float(np.median(ratios)), 3),
                "cpu_to_session_range": [round(ratios[0], 3), round(ratios[-1], 3)],
                "kbit_per_s": round(runs[0].kbit_per_s),
                "psnr_db_p50": round(float(np.median(scores)), 2),
                "psnr_db_min": min(scores),
            }
        )
    return {
        "resolution": f"{width}x{height}",
        "pattern": pattern,
        "frames": frames,
        "rounds": rounds,
        "session_options": H264Encoder(settings).x264_options(),
        "variants": rows,
    }
