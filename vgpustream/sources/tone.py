"""A test tone: a sine played in real time into a `SoundOut`, as a guest's sound card plays into QEMU's.

The synthetic source's `?tone=HZ` uses it, so that sound (its viewers' audio track, its recordings' sound
track) can be tried without a VM: the chunks go through the session's one `SoundEncoder`, like QEMU's.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from vgpustream.media.sound import SAMPLE_RATE, Pcm, SoundOut

CHUNK_S = 0.02
"""How often a chunk is delivered (QEMU 7.2 writes about every 23 ms)."""
LEVEL = 0.25
"""The sine's amplitude, of full scale."""


class Tone:
    """Plays a `hz` sine into `out`, on the event loop, between `start` and `stop`."""

    def __init__(self, hz: int) -> None:
        self.hz = hz
        self.out = SoundOut()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start playing (if it is not already)."""
        if self._task is None:
            self._task = asyncio.create_task(self._play(), name=f"tone-{self.hz}")
        self.out.available = True

    async def stop(self) -> None:
        """Stop playing; waits for the task to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.out.available = False
        self.out.end_run()

    async def _play(self) -> None:
        started, played = time.monotonic(), 0
        while True:
            await asyncio.sleep(CHUNK_S)
            due = round((time.monotonic() - started) * SAMPLE_RATE)  # as many samples as the time that passed
            t = np.arange(played, due) / SAMPLE_RATE
            wave = (LEVEL * np.sin(2 * np.pi * self.hz * t)).astype(np.float32)
            played = due
            self.out.deliver(Pcm(np.stack([wave, wave], axis=1), SAMPLE_RATE, time.time()))
