"""One recording on the event loop, and the recordings of a session as a watcher of its packets.

A recording watches like a viewer does: while one runs, the session is encoded (a session nobody
watches encodes nothing), and it starts on a keyframe it asks for. Where the session can have sound, it
listens too (the session's one Opus encode runs for it) and its file has a sound track from the start,
whether the guest plays now, later or never. Its packets go to a muxer thread through a bounded queue: a
disk too slow to keep up makes the recording drop packets up to the next keyframe (counted, like a
stalled viewer), never the session wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import av

from vgpustream.recording.writer import SOUND, TRACKS, VIDEO, MuxerThread, Stamped


class RecordingState(StrEnum):
    STARTING = "starting"
    """Waiting for the keyframe it starts on."""
    RECORDING = "recording"
    STOPPED = "stopped"
    FAILED = "failed"
    """The file could not be written on (a full disk); it plays up to its last fragment."""
    INTERRUPTED = "interrupted"
    """The server stopped without closing it (a crash); it plays up to its last fragment."""


FINISHED = (RecordingState.STOPPED, RecordingState.FAILED, RecordingState.INTERRUPTED)


@dataclass
class RecordingInfo:
    """What is known of a recording; kept as JSON beside its file."""

    id: str
    session_id: str
    label: str
    max_seconds: int
    max_bytes: int
    started_at: float = field(default_factory=time.time)
    state: RecordingState = RecordingState.STARTING
    stopped_at: float | None = None
    reason: str | None = None
    """Why it stopped: requested, max_seconds, max_bytes, session_stopped, or the write error."""
    frames: int = 0
    """Frames in the file."""
    audio_packets: int = 0
    """The session's 20 ms Opus packets in the file (where it has sound; silence is filled in between)."""
    bytes: int = 0
    duration: float = 0.0
    """Seconds from the first frame in the file to the last."""
    dropped: int = 0
    """Frames left out because the disk was too slow (each gap ends at a keyframe)."""
    audio_dropped: int = 0
    """Opus packets left out because the disk was too slow (silence stands in for them)."""
    first_frame: int | None = None
    last_frame: int | None = None
    """The session's encoded-frame numbers (its frames_encoded count) of the first and last frame recorded."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecordingInfo:
        return cls(**{**data, "state": RecordingState(data["state"])})


class Recorder:
    """Feeds one recording's muxer thread from the session's packets, until it is stopped or stops itself."""

    def __init__(
        self,
        info: RecordingInfo,
        path: Path,
        request_keyframe: Callable[[], None],
        save_info: Callable[[RecordingInfo], None],
        sound: bool = False,
    ) -> None:
        """`sound`: whether the session can have sound, so that the file gets a sound track."""
        self.info = info
        self.path = path
        self._request_keyframe = request_keyframe
        self._save_info = save_info
        """Keeps the info beside the file; called off the event loop: as it starts, every few seconds, at its end."""
        kinds = TRACKS if sound else (VIDEO,)
        self._writer = MuxerThread(
            path, info.max_bytes, lambda: save_info(replace(self.live)), self._writer_done, kinds
        )
        self._loop = asyncio.get_running_loop()
        self._finished: asyncio.Future[None] = self._loop.create_future()
        self._finish_callbacks: list[Callable[[Recorder], None]] = []
        self._waiting_for_keyframe = True
        self._stopping = False
        self._timer = self._loop.call_later(info.max_seconds, self.stop, "max_seconds")

    def on_finished(self, callback: Callable[[Recorder], None]) -> None:
        """Call `callback` on the event loop once the recording has ended and its file is closed."""
        self._finish_callbacks.append(callback)

    def start(self) -> None:
        """Start the muxer thread and ask the session for the keyframe to start on."""
        self._writer.start()
        self._request_keyframe()

    @property
    def live(self) -> RecordingInfo:
        """The info with what the writer has written so far."""
        stats = self._writer.stats
        info = self.info
        info.frames, info.bytes, info.duration = stats.frames, stats.bytes, round(stats.duration, 3)
        info.audio_packets = stats.audio_packets
        return info

    def offer(self, packets: list[av.Packet], frame_number: int) -> None:
        """One step's packets, frame number `frame_number` of the session; never blocks."""
        if self._stopping:
            return
        for packet in packets:
            started = self.info.first_frame is not None
            if self._waiting_for_keyframe and not packet.is_keyframe:
                self.info.dropped += int(started)
                continue
            if not self._writer.put(Stamped(VIDEO, packet)):
                self.info.dropped += 1
                self._waiting_for_keyframe = True
                self._request_keyframe()  # a still picture would bring none by itself
                continue
            self._waiting_for_keyframe = False
            if not started:
                self.info.first_frame, self.info.state = frame_number, RecordingState.RECORDING
            self.info.last_frame = frame_number

    def offer_sound(self, packets: list[av.Packet]) -> None:
        """Opus packets of the session's sound; taken once the first frame is (the file starts on it)."""
        if self._stopping or self.info.first_frame is None:
            return
        for packet in packets:
            if not self._writer.put(Stamped(SOUND, packet)):
                self.info.audio_dropped += 1

    def stop(self, reason: str = "requested") -> None:
        """Write what is queued and close the file; `wait` for it."""
        if self._stopping:
            return
        self._stopping = True
        self.info.reason = reason
        self._timer.cancel()
        self._writer.stop()

    async def wait(self) -> None:
        await asyncio.shield(self._finished)

    def _writer_done(self, reason: str | None, failed: bool) -> None:  # on the writer's thread
        self._loop.call_soon_threadsafe(self._finish, reason, failed)

    def _finish(self, reason: str | None, failed: bool) -> None:
        self._stopping = True
        self._timer.cancel()
        info = self.live
        info.state = RecordingState.FAILED if failed else RecordingState.STOPPED
        info.reason = reason or info.reason
        info.stopped_at = time.time()
        self._loop.create_task(self._saved(replace(info)), name=f"finish-{info.id}")

    async def _saved(self, info: RecordingInfo) -> None:
        try:
            await self._loop.run_in_executor(None, self._save_info, info)
        finally:
            for callback in self._finish_callbacks:
                callback(self)
            self._finished.set_result(None)


class Recorders:
    """The recordings of one session that are running: a watcher of its packets."""

    def __init__(self) -> None:
        self._running: dict[str, Recorder] = {}

    def __iter__(self) -> Iterator[Recorder]:
        return iter(list(self._running.values()))

    def __len__(self) -> int:
        return len(self._running)

    def get(self, recording_id: str) -> Recorder | None:
        return self._running.get(recording_id)

    def watched(self) -> bool:
        return bool(self._running)

    def add(self, recorder: Recorder) -> None:
        self._running[recorder.info.id] = recorder
        recorder.on_finished(self._finished)
        recorder.start()

    def publish(self, packets: list[av.Packet], frame_number: int) -> None:
        if packets:
            for recorder in self._running.values():
                recorder.offer(packets, frame_number)

    def publish_sound(self, packets: list[av.Packet]) -> None:
        for recorder in self._running.values():
            recorder.offer_sound(packets)

    async def stop(self, reason: str) -> None:
        """Stop every recording and wait until their files are closed."""
        running = list(self._running.values())
        for recorder in running:
            recorder.stop(reason)
        await asyncio.gather(*(recorder.wait() for recorder in running))

    def _finished(self, recorder: Recorder) -> None:
        self._running.pop(recorder.info.id, None)
