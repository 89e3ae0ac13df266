"""QEMU's sound (`-audiodev dbus` with `-display dbus,audiodev=ID`): an AudioOutListener, peer to peer.

QEMU calls the listener on a private socket (Audio.RegisterOutListener passes one end): Init announces a
playback stream and its PCM format, SetEnabled starts and stops it, SetVolume gives the guest's mixer
(mute, 0-255 per channel; QEMU leaves applying it to us), Write brings the samples, Fini ends it.
QEMU 7.2 mixes every guest stream into one of 44.1 kHz, 16-bit stereo. What QEMU sends is checked
against the format it announced; a call that does not fit is refused with an error and counted.

The guest's sound input (a recording device on the same audiodev, e.g. `-device hda-duplex`) is the other
way round: an AudioInListener (Audio.RegisterInListener) is told of the input stream the same way (Init,
SetEnabled, SetVolume, Fini), and QEMU asks it for the samples the guest records with Read(id, size), a
blocking call in QEMU's main loop, answered at once from the session's microphone buffer (silence if empty).
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
from vgpustream.input.microphone import MicrophoneIn, PcmFormat
from vgpustream.media.sound import Pcm, SoundOut
from vgpustream.sources.qemu.dbus import PROPERTIES, Display, peer_connection

log = logging.getLogger(__name__)

AUDIO_PATH = "Audio"
AUDIO = "org.qemu.Display1.Audio"
INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"
OUT_LISTENER = "org.qemu.Display1.AudioOutListener"
IN_LISTENER = "org.qemu.Display1.AudioInListener"
STREAM_SIGNATURES = {"Init": "tybbuyuub", "Fini": "t", "SetEnabled": "tb", "SetVolume": "tbay"}
SIGNATURES = STREAM_SIGNATURES | {"Write": "tay"}
"""The AudioOutListener methods QEMU calls, with their D-Bus signatures (QEMU's ui/dbus-display1.xml)."""
IN_SIGNATURES = STREAM_SIGNATURES | {"Read": "tt"}
"""The AudioInListener's: Read(id, size) answers the samples (ay)."""
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


def pcm_format(*announced: Any) -> PcmFormat:
    """The PCM format of an Init call (its arguments after the stream id); InvalidAudio if we do not take it."""
    bits, signed, is_float, rate, channels, bytes_per_frame, bytes_per_second, big_endian = announced
    dtype = SAMPLE_TYPES.get((bits, signed, is_float))
    if dtype is None or big_endian or rate not in RATES or channels not in (1, 2):
        raise InvalidAudio(f"unsupported PCM: {bits} bits, {rate} Hz, {channels} channels")
    if bytes_per_frame != dtype.itemsize * channels or bytes_per_second != bytes_per_frame * rate:
        raise InvalidAudio(f"PCM of {bytes_per_frame} bytes per frame, {bytes_per_second} per second")
    return PcmFormat(rate, channels, dtype)


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


class _AudioListener:
    """A QEMU audio listener, peer to peer: registers itself, checks QEMU's calls, hands them to `_on_<Member>`."""

    interface: str
    signatures: dict[str, str]
    register_method: str

    def __init__(self) -> None:
        self.stats = AudioStats()
        self._listener: PeerBus | None = None

    @property
    def registered(self) -> bool:
        """Whether QEMU is talking to us (the listener's socket is open)."""
        return self._listener is not None and self._listener.connected

    async def register(self, display: Display) -> bool:
        """Register with QEMU's Audio object; False if this QEMU has no D-Bus audio (or refused). Never raises."""

        def register(fd: int) -> Awaitable[list[Any]]:
            return display.call(AUDIO_PATH, AUDIO, self.register_method, "h", [0], unix_fds=[fd])

        try:
            (objects,) = await display.call("", INTROSPECTABLE, "Introspect")
            if f'<node name="{AUDIO_PATH}"' not in str(objects):
                return False  # no `-display dbus,audiodev=ID` (with `-audiodev dbus,id=ID`)
            self._listener = await peer_connection(register, "attach an audio listener", self._on_call)
        except SourceUnavailable as exc:
            log.warning("QEMU audio: not attached: %s", exc.message)
            return False
        return True

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.disconnect()

    def _on_call(self, message: Message) -> Message | None:
        if message.message_type is not MessageType.METHOD_CALL:
            return None
        if message.interface == PROPERTIES and message.member == "GetAll":
            return Message.new_method_return(message, "a{sv}", [{}])  # QEMU's proxy loads properties first
        expected = self.signatures.get(message.member)
        if message.interface != self.interface or expected is None:
            return None  # dbus-fast answers UnknownMethod
        try:
            if message.signature != expected:
                raise InvalidAudio(f"{message.member} with signature {bounded(message.signature, 20)}")
            reply = getattr(self, f"_on_{message.member}")(*message.body)
        except VgpuStreamError as exc:
            self.stats.refused += 1
            if self.stats.refused % 100 == 1:  # rate-limited: the first and then one in a hundred
                log.warning("QEMU audio: refused (%d so far): %s", self.stats.refused, exc.message)
            return Message.new_error(message, "org.qemu.Display1.Error.Invalid", exc.message)
        if reply is not None:
            return Message.new_method_return(message, *reply)
        return Message.new_method_return(message)


class QemuAudioOut(_AudioListener):
    """Listens to QEMU's playback streams and delivers what the enabled ones play to a `SoundOut`."""

    interface = OUT_LISTENER
    signatures = SIGNATURES
    register_method = "RegisterOutListener"

    def __init__(self, out: SoundOut) -> None:
        super().__init__()
        self.out = out
        self._streams: dict[int, PcmStream] = {}

    async def register(self, display: Display) -> bool:
        self.out.available = await super().register(display)
        return self.out.available

    def close(self) -> None:
        super().close()
        self._streams.clear()
        self.out.available = False
        self.out.end_run()

    def _stream(self, stream_id: int) -> PcmStream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise InvalidAudio("a call for a stream QEMU never announced")
        return stream

    def _on_Init(self, stream_id: int, *announced: Any) -> None:
        pcm = pcm_format(*announced)
        if stream_id not in self._streams and len(self._streams) >= MAX_STREAMS:
            raise InvalidAudio(f"more than {MAX_STREAMS} streams")
        self._streams[stream_id] = PcmStream(pcm.rate, pcm.channels, pcm.dtype)

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
        stream.volume = gains(mute, volume, stream.channels)

    def _on_Write(self, stream_id: int, data: bytes) -> None:
        stream = self._stream(stream_id)
        received_at = time.time()
        samples = stream.samples(data)
        self.stats.writes += 1
        if stream.enabled and stream.volume.any():
            self.out.deliver(Pcm(samples, stream.rate, received_at))


class QemuAudioIn(_AudioListener):
    """Answers QEMU's reads of the guest's sound input from a `MicrophoneIn` (one input stream: QEMU's mixer
    gives the guest's recording devices one)."""

    interface = IN_LISTENER
    signatures = IN_SIGNATURES
    register_method = "RegisterInListener"

    def __init__(self, microphone: MicrophoneIn) -> None:
        super().__init__()
        self.microphone = microphone
        self._stream: int | None = None

    def close(self) -> None:
        super().close()
        self._stream = None
        self.microphone.set_format(None)

    def _check(self, stream_id: int) -> None:
        if stream_id != self._stream:
            raise InvalidAudio("a call for an input stream QEMU never announced")

    def _on_Init(self, stream_id: int, *announced: Any) -> None:
        pcm = pcm_format(*announced)
        self._stream = stream_id
        self.microphone.set_format(pcm)

    def _on_Fini(self, stream_id: int) -> None:
        self._check(stream_id)
        self._stream = None
        self.microphone.set_format(None)

    def _on_SetEnabled(self, stream_id: int, enabled: bool) -> None:
        self._check(stream_id)
        self.microphone.clear()  # the guest starts (or stops) recording: it hears from now on

    def _on_SetVolume(self, stream_id: int, mute: bool, volume: bytes) -> None:
        self._check(stream_id)
        assert self.microphone.format is not None
        self.microphone.gain = gains(mute, volume, self.microphone.format.channels)

    def _on_Read(self, stream_id: int, size: int) -> tuple[str, list[Any]]:
        self._check(stream_id)
        self.stats.writes += 1
        return "ay", [self.microphone.read(size)]


def gains(mute: bool, volume: bytes, channels: int) -> np.ndarray:
    """Per-channel gains of a SetVolume call (0-255 each, or one for all; 0 when muted)."""
    if len(volume) not in (1, channels):
        raise InvalidAudio(f"volume for {len(volume)} channels")
    return np.frombuffer(volume, dtype=np.uint8).astype(np.float32) / 255 * (not mute)
