"""A session's sound: the guest's PCM, resampled to 48 kHz stereo and encoded once with Opus for every viewer.

The source hands PCM chunks to its `SoundOut` on the event loop (QEMU's audio listener does). The
session's `SoundEncoder` turns them into 20 ms Opus packets, timed on the capture loop's clock (the
video's epoch, in 1/48000 s), and the audience fans the same packets out to each viewer's audio
track, as it does the video. Silence costs nothing: while nobody listens, while the guest's stream is
off, and for every 20 ms frame that is digitally silent, no packet is made.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms, the frame WebRTC's Opus is packetized in
TIME_BASE = Fraction(1, SAMPLE_RATE)  # the RTP Opus clock, so packets need no rescaling
DEFAULT_BITRATE = 64_000
SILENT_PEAK = 2 / 32768
"""A 20 ms frame whose samples all stay below this (two 16-bit steps) is silence: it is not encoded."""
GAP_S = 0.2
"""PCM arriving this much later than the last chunk's end starts a new run, timed anew on the clock."""


@dataclass(frozen=True)
class Pcm:
    """A chunk of what the guest plays: float32 samples in [-1, 1], shaped (frames, channels)."""

    samples: np.ndarray
    rate: int
    received_at: float
    """Wall-clock time (time.time()) the chunk arrived; its last sample is about to be played then."""


class SoundOut:
    """A source's sound output, on the event loop: the source delivers chunks, the session's encoder takes them."""

    def __init__(self) -> None:
        self.available = False
        """Whether the source gets sound from the guest now (QEMU has D-Bus audio and we listen)."""
        self.encoder: SoundEncoder | None = None

    def deliver(self, pcm: Pcm) -> None:
        if self.encoder is not None:
            self.encoder.write(pcm)

    def end_run(self) -> None:
        """The guest's stream stopped (or changed): what comes next is timed anew."""
        if self.encoder is not None:
            self.encoder.end_run()


@dataclass
class SoundStats:
    packets: int = 0
    bytes: int = 0
    encoded_frames: int = 0
    """20 ms frames given to the Opus encoder (one encode per session, whatever the number of viewers)."""
    silent_frames: int = 0
    encode_seconds: float = 0.0
    """Time spent resampling and encoding, on the event loop."""


class SoundEncoder:
    """Resamples PCM chunks to 48 kHz stereo and encodes them into Opus packets for `publish`.

    `watched()` says whether anyone listens; while nobody does, chunks are dropped unencoded. `epoch`
    is the capture loop's clock origin (wall-clock seconds), so audio and video timestamps agree.
    """

    def __init__(
        self,
        publish: Callable[[list[av.Packet]], None],
        watched: Callable[[], bool],
        epoch: float,
        bitrate: int = DEFAULT_BITRATE,
    ) -> None:
        self.stats = SoundStats()
        self.bitrate = bitrate
        self._publish = publish
        self._watched = watched
        self._epoch = epoch
        self._context: av.AudioCodecContext | None = None
        self._resampler: av.AudioResampler | None = None
        self._input: tuple[int, int] | None = None
        """The (rate, channels) the resampler was made for."""
        self._next_pts: int | None = None
        """Where the next resampled frame goes on the clock; None between runs."""
        self._run_ends_at = 0.0

    def write(self, pcm: Pcm) -> None:
        """Encode a chunk (or drop it if nobody listens) and publish the packets it completes."""
        if not self._watched():
            self._next_pts = None
            return
        started = time.perf_counter()
        frames, channels = pcm.samples.shape
        if self._input != (pcm.rate, channels) or pcm.received_at - self._run_ends_at > GAP_S:
            self._start_run(pcm, frames)
        self._run_ends_at = pcm.received_at
        layout = "mono" if channels == 1 else "stereo"
        samples = np.ascontiguousarray(pcm.samples, dtype=np.float32).reshape(1, -1)
        chunk = av.AudioFrame.from_ndarray(samples, format="flt", layout=layout)
        chunk.sample_rate = pcm.rate
        assert self._resampler is not None
        packets = []
        for frame in self._resampler.resample(chunk):
            packets += self._encode(frame)
        self.stats.encode_seconds += time.perf_counter() - started
        if packets:
            self.stats.packets += len(packets)
            self.stats.bytes += sum(packet.size for packet in packets)
            self._publish(packets)

    def end_run(self) -> None:
        """The guest stopped its stream: the next chunk is timed anew (what the resampler holds is dropped)."""
        self._input = None
        self._next_pts = None

    def _start_run(self, pcm: Pcm, frames: int) -> None:
        """A new run of sound: a fresh resampler, and the clock time of the chunk's first sample."""
        channels = pcm.samples.shape[1]
        self._resampler = av.AudioResampler(format="flt", layout="stereo", rate=SAMPLE_RATE, frame_size=FRAME_SAMPLES)
        self._input = (pcm.rate, channels)
        start = pcm.received_at - frames / pcm.rate - self._epoch
        pts = round(start * SAMPLE_RATE)
        self._next_pts = pts if self._next_pts is None else max(pts, self._next_pts)

    def _encode(self, frame: av.AudioFrame) -> list[av.Packet]:
        assert self._next_pts is not None
        frame.pts, self._next_pts = self._next_pts, self._next_pts + frame.samples
        frame.time_base = TIME_BASE
        if float(np.max(np.abs(frame.to_ndarray()), initial=0.0)) < SILENT_PEAK:
            self.stats.silent_frames += 1
            return []
        self.stats.encoded_frames += 1
        packets = self._codec().encode(frame)
        for packet in packets:
            packet.is_keyframe = True  # every Opus packet decodes on its own: a viewer may start at any
        return packets

    def _codec(self) -> av.AudioCodecContext:
        if self._context is None:
            context = av.CodecContext.create("libopus", "w")
            context.sample_rate = SAMPLE_RATE
            context.layout = "stereo"
            context.format = "flt"
            context.bit_rate = self.bitrate
            context.time_base = TIME_BASE
            context.options = {"frame_duration": "20", "application": "audio"}
            context.open()
            self._context = context
        return self._context
