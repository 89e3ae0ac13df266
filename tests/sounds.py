"""What the sound tests share: hearing a viewer's audio track, and the frequency of a tone."""

from __future__ import annotations

import time

import av
import numpy as np

from vgpustream.sound import SAMPLE_RATE
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
