"""The session's microphone buffer (vgpustream.input.microphone.MicrophoneIn): what the guest reads, without QEMU."""

from __future__ import annotations

import time

import av
import numpy as np

from vgpustream.input.microphone import BUFFER_S, STARVED_S, MicrophoneIn, PcmFormat

QEMU_PCM = PcmFormat(44_100, 2, np.dtype("<i2"))
"""What QEMU 7.2's D-Bus audio announces for the guest's input: 44.1 kHz, 16-bit stereo."""


def tone(seconds: float) -> av.AudioFrame:
    """A 440 Hz tone at 48 kHz, mono float, as aiortc and the Opus decoder hand it over."""
    samples = (np.sin(2 * np.pi * 440 * np.arange(round(seconds * 48_000)) / 48_000) * 0.5).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = 48_000
    return frame


def test_the_guest_reads_silence_unless_a_viewer_speaks_and_then_what_it_sent():
    microphone = MicrophoneIn()
    assert microphone.read(4096) == b"", "no input stream: nothing"
    microphone.set_format(QEMU_PCM)
    assert microphone.read(4096) == bytes(4096), "nobody speaks: a quiet microphone"
    microphone.live = True
    microphone.heard()
    microphone.write(tone(0.02))
    got = microphone.read(1 << 20)
    assert 0 < len(got) <= round(0.02 * 44_100) * 4 and len(got) % 4 == 0, "what was sent, however little"
    assert np.abs(np.frombuffer(got, "<i2")).max() > 10_000
    assert microphone.read(4096) == b"", "a speaker's gap is waited for, not filled with silence"
    time.sleep(STARVED_S + 0.05)
    assert microphone.read(4096) == bytes(4096), "a stalled speaker does not stall the guest's recording"


def test_a_sender_that_runs_ahead_adds_no_more_than_the_buffer_s_delay():
    microphone = MicrophoneIn()
    microphone.set_format(QEMU_PCM)
    microphone.live = True
    for _ in range(50):
        microphone.write(tone(0.1))  # five seconds at once
    held = len(microphone.read(1 << 24))
    assert held <= round(BUFFER_S * 44_100) * 4
