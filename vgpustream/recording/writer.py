"""The muxer thread of one recording: the session's H.264 packets, and its Opus packets where it has sound,
into a fragmented MP4 file.

The file is written as the packets come (`empty_moov`, a fragment at each keyframe and at least every
FRAGMENT_SECONDS), and every fragment is handed to the kernel as soon as it is cut, so a process that dies
leaves a file that plays up to its last fragment. Nothing is encoded: each packet is copied as it is,
its SPS/PPS in-band on every IDR, so a change of the picture's size needs no new track (see the README).

The tracks are declared at the first packet (the keyframe the recording starts on): the video, and the
sound when the session can have sound (`Tracks`). The session's sound comes in runs, with nothing sent
while the guest is silent; the sound track is kept continuous from the first frame to the last anyway,
with a silent Opus frame every 20 ms where the session sent none, because players pace audio by the
samples they are given, not by their timestamps: a gap would shift the sound after it against the picture.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av

from vgpustream.errors import printable
from vgpustream.media.encoder import TIME_BASE
from vgpustream.media.sound import FRAME_SAMPLES, SAMPLE_RATE
from vgpustream.media.sound import TIME_BASE as SOUND_TIME_BASE

FRAGMENT_SECONDS = 1.0
CHECKPOINT_SECONDS = 5.0
QUEUE_BYTES = 32 * 1024 * 1024
"""The most bytes waiting for the disk."""
VIDEO = "video"
SOUND = "sound"
"""The session's Opus packets (vgpustream.media.sound): 20 ms each, timed on the video's clock in 1/48000 s."""
QUEUE_PACKETS = {VIDEO: 300, SOUND: 500}
"""The most packets of each kind waiting for the disk (10 s of 30 fps video, 10 s of sound); past that the
recording drops video to the next keyframe, sound to where the queue has room again."""
TRACKS = (VIDEO, SOUND)
"""The kinds of stream a recording can hold, in track order."""
SILENT_OPUS = b"\xfc\xff\xfe"
"""20 ms of stereo silence as one Opus packet: TOC 0xFC (CELT fullband 20 ms, stereo, one frame) and a
frame that decodes with its silence flag set."""
FILL_BEHIND_S = 1.0
"""Silence is filled in up to this long before the latest video frame: the session's sound comes a little
later than the picture of the same moment (up to a second when QEMU writes a stalled guest's sound at once)."""
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
    audio_packets: int = 0
    """The session's Opus packets in the file (not the silence filled in)."""
    bytes: int = 0
    duration: float = 0.0


class MuxerThread:
    """Writes queued packets to `path` on a thread of its own; `put` never blocks.

    `kinds` are the tracks of the file (VIDEO, and SOUND where the session can have sound). On the
    writer's thread, `checkpoint()` is called first and then every CHECKPOINT_SECONDS while it writes (to
    keep what is known of the recording beside it), and `done(reason, failed)` once the file is closed:
    reason None when it was told to stop, else why it stopped itself (`max_bytes`, a write error).
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        checkpoint: Callable[[], None],
        done: Callable[[str | None, bool], None],
        kinds: tuple[str, ...] = (VIDEO,),
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.kinds = kinds
        self.stats = WriterStats()
        self._checkpoint = checkpoint
        self._checkpoint_at = 0.0
        self._done = done
        self._queue: deque[Stamped | None] = deque()
        self._queued = dict.fromkeys(kinds, 0)
        """Packets of each kind in the queue."""
        self._queued_bytes = 0
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"record-{path.stem}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, item: Stamped) -> bool:
        """Queue a packet for the disk; False (and nothing queued) when the queue is full."""
        size = item.packet.size
        with self._ready:
            if self._queued[item.kind] >= QUEUE_PACKETS[item.kind] or self._queued_bytes + size > QUEUE_BYTES:
                return False
            self._queue.append(item)
            self._queued[item.kind] += 1
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
                self._queued[item.kind] -= 1
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
        tracks: Tracks | None = None
        outcome: tuple[str | None, bool] = (None, False)
        try:
            while (item := self._next()) is not None:
                if tracks is None:
                    tracks = Tracks(container, item.packet, self.kinds)
                if item.kind == VIDEO:
                    tracks.mux_video(item.packet)
                    self.stats.frames += 1
                    self.stats.duration = tracks.video_seconds
                elif tracks.mux_sound(item.packet):
                    self.stats.audio_packets += 1
                self._wrote(file)
                if self.stats.bytes >= self.max_bytes:
                    outcome = ("max_bytes", False)
                    break
            if tracks is not None:
                tracks.fill_silence_to_end()
        except (OSError, av.FFmpegError) as exc:
            outcome = (_why(exc), True)
        try:
            container.close()
        except (OSError, av.FFmpegError) as exc:
            outcome = outcome if outcome[1] else (_why(exc), True)
        self.stats.bytes = file.tell()
        return outcome

    def _wrote(self, file: BinaryIO) -> None:
        self.stats.bytes = file.tell()
        if time.monotonic() - self._checkpoint_at >= CHECKPOINT_SECONDS:
            self._checkpoint()
            self._checkpoint_at = time.monotonic()


class Tracks:
    """The file's tracks, declared from the first packet (a keyframe, whose SPS and PPS become the avcC
    box), and the packets' timestamps: both tracks count from that keyframe, on the session's one clock.

    The sound track is a gapless run of 20 ms frames from the first frame on: where the session sent no
    sound, silent ones (written FILL_BEHIND_S behind the picture, and to the last frame at the end). Each
    of the session's packets goes in at the frame boundary nearest its time, so that a run of sound is
    placed within 10 ms of where it belongs; one nearer to a boundary already written (a packet from
    before the first frame, or a run the session's encoder timed anew a little earlier) is left out.
    """

    def __init__(self, container: av.container.OutputContainer, keyframe: av.Packet, kinds: tuple[str, ...]) -> None:
        self._container = container
        self._video = container.add_stream("h264")
        self._video.time_base = TIME_BASE
        self._video.codec_context.extradata = parameter_sets(bytes(keyframe))
        self._sound: av.stream.Stream | None = None
        if SOUND in kinds:
            # the OpusHead (dOps box) comes from the codec context, which PyAV opens with the header but
            # which is given no sound: the packets are the session's
            self._sound = container.add_stream("libopus", rate=SAMPLE_RATE, layout="stereo")
            self._sound.time_base = SOUND_TIME_BASE
        self._first_pts = keyframe.pts
        self._sound_origin = round(keyframe.pts * TIME_BASE / SOUND_TIME_BASE)
        self._last_video_pts = 0
        self._sound_end = 0
        """Where the sound written so far ends, in SOUND_TIME_BASE units from the first frame."""

    @property
    def video_seconds(self) -> float:
        """Seconds from the first frame to the last written."""
        return float(self._last_video_pts * TIME_BASE)

    def mux_video(self, packet: av.Packet) -> None:
        self._last_video_pts = packet.pts - self._first_pts
        self._mux(self._video, bytes(packet), self._last_video_pts, TIME_BASE, packet.is_keyframe)
        if self._sound is not None:
            self._fill_silence(_samples(self.video_seconds - FILL_BEHIND_S))

    def mux_sound(self, packet: av.Packet) -> bool:
        """Write one of the session's Opus packets; False where it is left out (see the class)."""
        assert self._sound is not None, "no sound track: the recorder sends sound only to a file declared with one"
        late = round((packet.pts - self._sound_origin - self._sound_end) / FRAME_SAMPLES)
        if late < 0:
            return False
        self._fill_silence(self._sound_end + late * FRAME_SAMPLES)
        self._mux(self._sound, bytes(packet), self._sound_end, SOUND_TIME_BASE, True)
        self._sound_end += FRAME_SAMPLES
        return True

    def fill_silence_to_end(self) -> None:
        """Make the sound track as long as the video."""
        if self._sound is not None:
            self._fill_silence(_samples(self.video_seconds))

    def _fill_silence(self, until: int) -> None:
        """Silent frames from the end of the sound written up to `until` (at most a frame short of it)."""
        assert self._sound is not None
        while self._sound_end + FRAME_SAMPLES <= until:
            self._mux(self._sound, SILENT_OPUS, self._sound_end, SOUND_TIME_BASE, True)
            self._sound_end += FRAME_SAMPLES

    def _mux(self, stream: av.stream.Stream, data: bytes, pts: int, time_base: Fraction, keyframe: bool) -> None:
        copy = av.Packet(data)  # the shared packet stays as the viewers got it
        copy.pts = copy.dts = pts
        copy.time_base = time_base
        copy.is_keyframe = keyframe
        copy.stream = stream
        self._container.mux(copy)


def parameter_sets(annex_b: bytes) -> bytes:
    """The SPS and PPS NAL units (types 7 and 8) of an Annex B access unit, with their start codes."""
    units = annex_b.split(b"\x00\x00\x01")
    kept = [unit.rstrip(b"\x00") for unit in units[1:] if unit and unit[0] & 0x1F in (7, 8)]
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in kept)


def _samples(seconds: float) -> int:
    return round(seconds * SAMPLE_RATE)


def _why(exc: Exception) -> str:
    """A writer error as a short reason (an OSError's strerror: 'No space left on device')."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return printable(text, 120)
