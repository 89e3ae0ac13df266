"""`vgpustream bench sound`: CPU of a session's sound path per second of sound, and its packets.

A 440 Hz sine in the chunks QEMU 7.2 writes (1024 frames of 44.1 kHz, 16-bit stereo) goes through
what a session does with each: to float with the guest's volume (`PcmStream.samples`), resampled to
48 kHz and Opus-encoded (`SoundEncoder`), as fast as it runs. CPU seconds over seconds of sound is
the share of one core a playing guest costs, once, whatever the number of viewers (their RTP packing
is aiortc's, per viewer, and not counted here; nor is D-Bus decoding of QEMU's Write calls).
"""

from __future__ import annotations

import time
from typing import Any

import av
import numpy as np

from vgpustream.media.sound import Pcm, SoundEncoder
from vgpustream.sources.qemu.audio import PcmStream

QEMU_RATE = 44_100
QEMU_CHUNK = 1024  # frames per Write from QEMU 7.2's D-Bus audio


def run(seconds: float, bitrate: int) -> dict[str, Any]:
    packets: list[av.Packet] = []
    stream = PcmStream(QEMU_RATE, 2, np.dtype("<i2"), enabled=True)
    encoder = SoundEncoder(packets.extend, lambda: True, time.time(), bitrate)
    t = np.arange(round(seconds * QEMU_RATE)) / QEMU_RATE
    wave = (0.5 * 32767 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    data = np.stack([wave, wave], axis=1).tobytes()
    chunk_bytes = QEMU_CHUNK * 4
    arrived = time.time()
    started = time.process_time()
    for offset in range(0, len(data), chunk_bytes):
        arrived += QEMU_CHUNK / QEMU_RATE
        encoder.write(Pcm(stream.samples(data[offset : offset + chunk_bytes]), QEMU_RATE, arrived))
    cpu = time.process_time() - started
    return {
        "seconds_of_sound": seconds,
        "bitrate": bitrate,
        "cpu_seconds": round(cpu, 4),
        "cpu_per_second_of_sound": round(cpu / seconds, 5),
        "packets": len(packets),
        "packets_per_second": round(len(packets) / seconds, 1),
        "bytes_per_second": round(sum(packet.size for packet in packets) / seconds),
    }


def table(result: dict[str, Any]) -> str:
    return (
        f"{result['seconds_of_sound']:g} s of a 440 Hz tone (QEMU's 44.1 kHz s16 stereo chunks) at "
        f"{result['bitrate']} bit/s: {result['cpu_per_second_of_sound'] * 1000:.1f} ms CPU per second of sound "
        f"({result['cpu_per_second_of_sound'] * 100:.2f} % of a core), {result['packets_per_second']} packets/s, "
        f"{result['bytes_per_second']} bytes/s"
    )
