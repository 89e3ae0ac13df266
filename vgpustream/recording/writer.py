"""The muxer thread of one recording: the session's H.264 packets into a fragmented MP4 file.

The file is written as the packets come (`empty_moov`, a fragment at each keyframe and at least every
FRAGMENT_SECONDS), and every fragment is handed to the kernel as soon as it is cut, so a process that dies
leaves a file that plays up to its last fragment. Nothing is encoded: each packet is copied as it is,
its SPS/PPS in-band on every IDR, so a change of the picture's size needs no new track (see the README).

A second stream (a session's Opus sound) would be one more entry of `TRACKS`, added to the container
before the first packet; packets carry the kind of stream they belong to.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av

from vgpustream.encoder import TIME_BASE
from vgpustream.errors import printable

FRAGMENT_SECONDS = 1.0
CHECKPOINT_SECONDS = 5.0
QUEUE_PACKETS = 300
"""The most packets waiting for the disk (10 s at 30 fps); past that the recording drops to the next keyframe."""
QUEUE_BYTES = 32 * 1024 * 1024
"""The most bytes waiting for the disk."""
VIDEO = "video"
TRACKS = (VIDEO,)
"""The kinds of stream a recording holds, in track order."""
_STOP = None


@dataclass(frozen=True)
class Stamped:
    """A packet handed to the writer, with the kind of stream it belongs to."""

    kind: str
    packet: av.Packet


@dataclass
class WriterStats:
    """What the writer has put on disk; written by its thread, read by anyone (whole values)."""

    frames: int = 0
    bytes: int = 0
    duration: float = 0.0


class MuxerThread:
    """Writes queued packets to `path` on a thread of its own; `put` never blocks.

    On the writer's thread, `checkpoint()` is called first and then every CHECKPOINT_SECONDS while it
    writes (to keep what is known of the recording beside it), and `done(reason, failed)` once the file
    is closed: reason None when it was told to stop, else why it stopped itself (`max_bytes`, a write error).
    """

    def __init__(
        self, path: Path, max_bytes: int, checkpoint: Callable[[], None], done: Callable[[str | None, bool], None]
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.stats = WriterStats()
        self._checkpoint = checkpoint
        self._checkpoint_at = 0.0
        self._done = done
        self._queue: deque[Stamped | None] = deque()
        self._queued_bytes = 0
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"record-{path.stem}", daemon=True)
        self._first_pts: int | None = None

    def start(self) -> None:
        self._thread.start()

    def put(self, item: Stamped) -> bool:
        """Queue a packet for the disk; False (and nothing queued) when the queue is full."""
        size = item.packet.size
        with self._ready:
            if len(self._queue) >= QUEUE_PACKETS or self._queued_bytes + size > QUEUE_BYTES:
                return False
            self._queue.append(item)
            self._queued_bytes += size
            self._ready.notify()
        return True

    def stop(self) -> None:
        """Write what is queued, then close the file (asynchronously: `done` says when)."""
        with self._ready:
            self._queue.append(_STOP)
            self._ready.notify()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # on the writer's thread

    def _next(self) -> Stamped | None:
        with self._ready:
            while not self._queue:
                self._ready.wait()
            item = self._queue.popleft()
            if item is not None:
                self._queued_bytes -= item.packet.size
            return item

    def _run(self) -> None:
        reason, failed = None, False
        self._checkpoint()
        self._checkpoint_at = time.monotonic()
        try:
            with self.path.open("wb", buffering=0) as file:
                reason, failed = self._write(file)
        except OSError as exc:  # the file cannot be created, or closing it failed
            reason, failed = _why(exc), True
        self._done(reason, failed)

    def _write(self, file: BinaryIO) -> tuple[str | None, bool]:
        container = av.open(
            file,
            "w",
            format="mp4",
            options={
                "movflags": "frag_keyframe+empty_moov+default_base_moof",
                "frag_duration": str(int(FRAGMENT_SECONDS * 1_000_000)),
                "flush_packets": "1",
            },
        )
        streams: dict[str, av.stream.Stream] = {}
        outcome: tuple[str | None, bool] = (None, False)
        try:
            while (item := self._next()) is not None:
                if not streams:
                    streams = self._open_streams(container, item.packet)
                self._mux(container, streams[item.kind], item.packet, file)
                if self.stats.bytes >= self.max_bytes:
                    outcome = ("max_bytes", False)
                    break
        except (OSError, av.FFmpegError) as exc:
            outcome = (_why(exc), True)
        try:
            container.close()
        except (OSError, av.FFmpegError) as exc:
            outcome = outcome if outcome[1] else (_why(exc), True)
        self.stats.bytes = file.tell()
        return outcome

    def _open_streams(
        self, container: av.container.OutputContainer, keyframe: av.Packet
    ) -> dict[str, av.stream.Stream]:
        """The tracks, described by the first packet: a keyframe, whose SPS and PPS become the avcC box."""
        video = container.add_stream("h264")
        video.time_base = TIME_BASE
        video.codec_context.extradata = parameter_sets(bytes(keyframe))
        return {VIDEO: video}

    def _mux(
        self, container: av.container.OutputContainer, stream: av.stream.Stream, packet: av.Packet, file: BinaryIO
    ) -> None:
        if self._first_pts is None:
            self._first_pts = packet.pts
        copy = av.Packet(bytes(packet))  # the shared packet stays as the viewers got it
        copy.pts = copy.dts = packet.pts - self._first_pts
        copy.time_base = TIME_BASE
        copy.is_keyframe = packet.is_keyframe
        copy.stream = stream
        container.mux(copy)
        stats = self.stats
        stats.frames += 1
        stats.duration = float(copy.pts * TIME_BASE)
        stats.bytes = file.tell()
        if time.monotonic() - self._checkpoint_at >= CHECKPOINT_SECONDS:
            self._checkpoint()
            self._checkpoint_at = time.monotonic()


def parameter_sets(annex_b: bytes) -> bytes:
    """The SPS and PPS NAL units (types 7 and 8) of an Annex B access unit, with their start codes."""
    units = annex_b.split(b"\x00\x00\x01")
    kept = [unit.rstrip(b"\x00") for unit in units[1:] if unit and unit[0] & 0x1F in (7, 8)]
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in kept)


def _why(exc: Exception) -> str:
    """A writer error as a short reason (an OSError's strerror: 'No space left on device')."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return printable(text, 120)
