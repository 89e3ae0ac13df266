"""What the sound tests share: hearing a viewer's audio track, and the frequency of a tone."""

from __future__ import annotations

import time
import wave
from pathlib import Path

import av
import numpy as np
from aiortc.mediastreams import AudioStreamTrack

from vgpustream.media.sound import SAMPLE_RATE
from vgpustream.testing.receiver import WhepReceiver

TONE_HZ = 440.0
"""What the tone sources play: QEMU's guest (tests/qemu/play-tone.sh) and `synthetic:…?tone=440`."""


async def hear(viewer: WhepReceiver, seconds: float) -> np.ndarray:
    """`seconds` of what the viewer's audio track plays, mono float, once the tone has begun."""
    deadline = time.monotonic() + 120
    while np.abs((await viewer.next_sound(timeout=120)).to_ndarray()).max() < 1000:
        assert time.monotonic() < deadline, "the viewer never heard the tone"
    chunks = []
    for _ in range(round(seconds * 50)):
        frame: av.AudioFrame = await viewer.next_sound()
        assert (frame.sample_rate, frame.layout.name, frame.format.name) == (SAMPLE_RATE, "stereo", "s16")
        chunks.append(frame.to_ndarray().reshape(-1, 2).astype(np.float64).sum(axis=1))
    return np.concatenate(chunks)


def peak_hz(samples: np.ndarray) -> float:
    """The loudest frequency of 48 kHz `samples` (FFT, Hann window)."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(samples))


def opus_packets(seconds: float, frame_ms: float = 20, hz: float = TONE_HZ) -> list[bytes]:
    """A mono tone of `hz` encoded by libopus in `frame_ms` frames at 48 kHz, as a browser's AudioEncoder sends it."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = SAMPLE_RATE, "mono", "s16"
    encoder.bit_rate = 64_000
    encoder.options = {"frame_duration": f"{frame_ms:g}", "application": "audio"}
    encoder.open()
    step = round(SAMPLE_RATE * frame_ms / 1000)
    times = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = (np.sin(2 * np.pi * hz * times) * 0.5 * 32767).astype(np.int16)
    packets = []
    for start in range(0, len(tone) - step + 1, step):
        frame = av.AudioFrame.from_ndarray(tone[start : start + step].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = SAMPLE_RATE, start
        packets += [bytes(packet) for packet in encoder.encode(frame)]
    return packets


def write_bursts(path: Path, period_s: float = 2.0, tone_s: float = 0.5, hz: float = TONE_HZ) -> None:
    """A WAV (48 kHz, 16-bit mono) of `period_s`: `tone_s` of a sine of `hz` from its first sample, then silence.
    Chromium's fake microphone plays it in a loop: a burst starts every `period_s`."""
    times = np.arange(round(tone_s * SAMPLE_RATE)) / SAMPLE_RATE
    samples = np.zeros(round(period_s * SAMPLE_RATE), dtype=np.int16)
    samples[: len(times)] = np.sin(2 * np.pi * hz * times) * 0.5 * 32767
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.tobytes())


def onsets(samples: np.ndarray, block: int = 240, threshold: float = 2000) -> list[int]:
    """Where sound starts after silence in 16-bit `samples`: the first sample of each block of `block` samples
    whose peak passes `threshold` after a block that did not."""
    blocks = np.abs(samples[: len(samples) // block * block].astype(np.int32)).reshape(-1, block).max(axis=1)
    loud = blocks > threshold
    starts = np.flatnonzero(loud[1:] & ~loud[:-1]) + 1
    return [int(index) * block for index in starts]


class ToneTrack(AudioStreamTrack):
    """A microphone track for aiortc that says a 440 Hz tone, paced in real time (20 ms frames, 48 kHz mono)."""

    def __init__(self) -> None:
        super().__init__()
        self._sent = 0

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()  # silence, paced and timed by aiortc
        times = (self._sent + np.arange(frame.samples)) / frame.sample_rate
        self._sent += frame.samples
        tone = (np.sin(2 * np.pi * TONE_HZ * times) * 0.5 * 32767).astype(np.int16)
        frame.planes[0].update(np.repeat(tone, len(frame.layout.channels)).tobytes())
        return frame
