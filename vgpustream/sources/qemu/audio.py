"""QEMU's sound (`-audiodev dbus` with `-display dbus,audiodev=ID`): an AudioOutListener, peer to peer.

QEMU calls the listener on a private socket (Audio.RegisterOutListener passes one end): Init announces a
playback stream and its PCM format, SetEnabled starts and stops it, SetVolume gives the guest's mixer
(mute, 0-255 per channel; QEMU leaves applying it to us), Write brings the samples, Fini ends it.
QEMU 7.2 mixes every guest stream into one of 44.1 kHz, 16-bit stereo. What QEMU sends is checked
against the format it announced; a call that does not fit is refused with an error and counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from dbus_fast import Message, MessageType

from vgpustream.compat import PeerBus
from vgpustream.errors import InvalidPlane, SourceUnavailable, VgpuStreamError, bounded
from vgpustream.sound import Pcm, SoundOut
from vgpustream.sources.qemu.dbus import PROPERTIES, Display, peer_connection

log = logging.getLogger(__name__)

AUDIO_PATH = "Audio"
AUDIO = "org.qemu.Display1.Audio"
INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"
OUT_LISTENER = "org.qemu.Display1.AudioOutListener"
SIGNATURES = {"Init": "tybbuyuub", "Fini": "t", "SetEnabled": "tb", "SetVolume": "tbay", "Write": "tay"}
"""The AudioOutListener methods QEMU calls, with their D-Bus signatures (QEMU's ui/dbus-display1.xml)."""
MAX_STREAMS = 16
MAX_WRITE_S = 1.0
"""The longest Write accepted, in seconds of sound (QEMU 7.2 writes about 23 ms at a time)."""
RATES = range(8_000, 192_001)
SAMPLE_TYPES = {
    (8, False, False): np.dtype("u1"),
    (16, True, False): np.dtype("<i2"),
    (32, True, False): np.dtype("<i4"),
    (32, True, True): np.dtype("<f4"),
}
"""The PCM formats QEMU's mixer can produce that we take, by (bits, signed, float), little-endian."""


class InvalidAudio(InvalidPlane):
    """QEMU sent an audio call that does not fit the stream's announced format."""


@dataclass
class PcmStream:
    """One playback stream QEMU announced."""

    rate: int
    channels: int
    dtype: np.dtype[Any]
    enabled: bool = False
    volume: np.ndarray = field(default_factory=lambda: np.ones(1, dtype=np.float32))
    """Per-channel gain from SetVolume (0 when muted)."""

    def samples(self, data: bytes) -> np.ndarray:
        """The chunk as float32 in [-1, 1], (frames, channels), the guest's volume applied."""
        frame_bytes = self.dtype.itemsize * self.channels
        if len(data) % frame_bytes or len(data) > MAX_WRITE_S * self.rate * frame_bytes:
            raise InvalidAudio(f"Write of {len(data)} bytes for {self.channels}-channel frames")
        raw = np.frombuffer(data, dtype=self.dtype).reshape(-1, self.channels)
        if self.dtype.kind == "f":
            samples = np.clip(raw, -1.0, 1.0)
        elif self.dtype.kind == "u":
            samples = (raw.astype(np.float32) - 128) / 128
        else:
            samples = raw.astype(np.float32) / float(np.iinfo(self.dtype).max + 1)
        return samples * self.volume


@dataclass
class AudioStats:
    writes: int = 0
    refused: int = 0


class QemuAudioOut:
    """Listens to QEMU's playback streams and delivers what the enabled ones play to a `SoundOut`."""

    def __init__(self, out: SoundOut) -> None:
        self.out = out
        self.stats = AudioStats()
        self._streams: dict[int, PcmStream] = {}
        self._listener: PeerBus | None = None

    @property
    def registered(self) -> bool:
        """Whether QEMU is sending us its sound (the listener's socket is open)."""
        return self._listener is not None and self._listener.connected

    async def register(self, display: Display) -> bool:
        """Register as QEMU's audio out listener; False if this QEMU has no D-Bus audio (or refused). Never raises."""

        def register(fd: int) -> Awaitable[list[Any]]:
            return display.call(AUDIO_PATH, AUDIO, "RegisterOutListener", "h", [0], unix_fds=[fd])

        try:
            (objects,) = await display.call("", INTROSPECTABLE, "Introspect")
            if f'<node name="{AUDIO_PATH}"' not in str(objects):
                return False  # no `-display dbus,audiodev=ID` (with `-audiodev dbus,id=ID`)
            self._listener = await peer_connection(register, "attach an audio listener", self._on_call)
        except SourceUnavailable as exc:
            log.warning("QEMU audio: not attached: %s", exc.message)
            return False
        self.out.available = True
        return True

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.disconnect()
        self._streams.clear()
        self.out.available = False
        self.out.end_run()

    def _on_call(self, message: Message) -> Message | None:
        if message.message_type is not MessageType.METHOD_CALL:
            return None
        if message.interface == PROPERTIES and message.member == "GetAll":
            return Message.new_method_return(message, "a{sv}", [{}])  # QEMU's proxy loads properties first
        expected = SIGNATURES.get(message.member)
        if message.interface != OUT_LISTENER or expected is None:
            return None  # dbus-fast answers UnknownMethod
        try:
            if message.signature != expected:
                raise InvalidAudio(f"{message.member} with signature {bounded(message.signature, 20)}")
            getattr(self, f"_on_{message.member}")(*message.body)
        except VgpuStreamError as exc:
            self.stats.refused += 1
            if self.stats.refused % 100 == 1:  # rate-limited: the first and then one in a hundred
                log.warning("QEMU audio: refused (%d so far): %s", self.stats.refused, exc.message)
            return Message.new_error(message, "org.qemu.Display1.Error.Invalid", exc.message)
        return Message.new_method_return(message)

    def _stream(self, stream_id: int) -> PcmStream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise InvalidAudio("a call for a stream QEMU never announced")
        return stream

    def _on_Init(self, stream_id: int, *pcm_format: Any) -> None:
        bits, signed, is_float, rate, channels, bytes_per_frame, bytes_per_second, big_endian = pcm_format
        dtype = SAMPLE_TYPES.get((bits, signed, is_float))
        if dtype is None or big_endian or rate not in RATES or channels not in (1, 2):
            raise InvalidAudio(f"unsupported PCM: {bits} bits, {rate} Hz, {channels} channels")
        if bytes_per_frame != dtype.itemsize * channels or bytes_per_second != bytes_per_frame * rate:
            raise InvalidAudio(f"PCM of {bytes_per_frame} bytes per frame, {bytes_per_second} per second")
        if stream_id not in self._streams and len(self._streams) >= MAX_STREAMS:
            raise InvalidAudio(f"more than {MAX_STREAMS} streams")
        self._streams[stream_id] = PcmStream(rate, channels, dtype)

    def _on_Fini(self, stream_id: int) -> None:
        self._stream(stream_id)
        del self._streams[stream_id]
        self.out.end_run()

    def _on_SetEnabled(self, stream_id: int, enabled: bool) -> None:
        self._stream(stream_id).enabled = enabled
        if not enabled:
            self.out.end_run()

    def _on_SetVolume(self, stream_id: int, mute: bool, volume: bytes) -> None:
        stream = self._stream(stream_id)
        if len(volume) not in (1, stream.channels):
            raise InvalidAudio(f"volume for {len(volume)} channels")
        gains = np.frombuffer(volume, dtype=np.uint8).astype(np.float32) / 255
        stream.volume = gains * (not mute)

    def _on_Write(self, stream_id: int, data: bytes) -> None:
        stream = self._stream(stream_id)
        received_at = time.time()
        samples = stream.samples(data)
        self.stats.writes += 1
        if stream.enabled and stream.volume.any():
            self.out.deliver(Pcm(samples, stream.rate, received_at))
