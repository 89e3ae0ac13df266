"""A viewer's microphone into the guest: one viewer at a time per session, decoded once, read by the source.

A control viewer whose token allows it (`microphone: use`) asks for the session's microphone on its input
channel, `{"type": "microphone", "on": true}` (over the WebSocket with the format of the Opus packets it will
send: `"codec": "opus", "sampleRate": 48000, "numberOfChannels": 1 or 2`), and gives it back with `"on":
false` (or by leaving). It is told what became of each request, `{"type": "microphone", "live": bool,
"message": null or why not}`. While it holds the microphone, its sound comes as Opus: on its WebRTC audio
track (aiortc decodes it) or in binary WebSocket messages (decoded here with PyAV). The decoded sound is
resampled to the format the source announced and buffered in its `MicrophoneIn`, from which the source
takes what the guest records (QEMU reads the samples it needs); an empty buffer reads as silence.

Everything a viewer sends is bounded: packets no larger than MAX_PACKET_BYTES, at most MAX_PACKET_RATE a
second, no more than MAX_SPEED seconds of sound a second; past that the viewer's microphone is stopped and
the viewer told why. Sound from a viewer that does not hold the microphone is refused and counted.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np

from vgpustream.input.events import InvalidInput, has_type, json_object
from vgpustream.ratelimit import TokenBucket

ACCESS = ("none", "use")
"""What a viewer token may do with the guest's microphone input."""
SAMPLE_RATE = 48_000
"""The rate of the Opus sound viewers send (WebRTC's Opus clock; the console's AudioEncoder is set to it)."""
CHANNELS = (1, 2)
MAX_PACKET_BYTES = 4000
"""The largest Opus packet taken (RFC 6716: 120 ms of 1275-byte frames stays below it; 20 ms of speech is
about 100-200 bytes)."""
MAX_PACKET_RATE, PACKET_BURST = 100, 100
"""Opus packets per second a viewer may send (the console sends 50), in bursts of up to PACKET_BURST."""
MAX_SPEED, SPEED_BURST_S = 1.5, 1.0
"""Seconds of sound a viewer may send per second of time, with SPEED_BURST_S seconds to catch up after a stall."""
BUFFER_S = 0.2
"""The most sound kept for the guest; past it the oldest goes (a sender that runs ahead does not add delay)."""
STARVED_S = 0.25
"""A speaker that sent nothing for this long is a quiet microphone: the guest is given silence, not kept waiting."""
MAX_READ_S = 1.0
"""The most sound one read may ask for."""
MAX_MESSAGE_BYTES = 256


class MicrophoneRefused(InvalidInput):
    """A microphone request or sound the session does not take; the message says why, for the viewer."""


def default_access(role: str) -> str:
    """A viewer token's microphone access unless it says otherwise: none (the operator's own: use)."""
    return "use" if role == "operator" else "none"


def is_microphone_message(message: str | bytes) -> bool:
    """Whether an input-channel message is a microphone request (by its start: `{"type": "microphone"`)."""
    return has_type(message, "microphone")


@dataclass(frozen=True)
class MicrophoneRequest:
    on: bool
    sample_rate: int = SAMPLE_RATE
    channels: int = 1


def parse_request(message: str | bytes) -> MicrophoneRequest:
    """A viewer's `{"type": "microphone", "on", …}`; MicrophoneRefused (with the reason) if it is not one we take."""
    try:
        data = json_object(message, MAX_MESSAGE_BYTES)
    except InvalidInput as exc:
        raise MicrophoneRefused(f"not a microphone request: {exc}") from None
    on, codec = data.get("on"), data.get("codec", "opus")
    rate, channels = data.get("sampleRate", SAMPLE_RATE), data.get("numberOfChannels", 1)
    if not isinstance(on, bool):
        raise MicrophoneRefused('a microphone request needs "on": true or false')
    if codec != "opus":
        raise MicrophoneRefused("the microphone's sound must be Opus")
    if type(rate) is not int or rate != SAMPLE_RATE:
        raise MicrophoneRefused(f"the microphone's sound must be at {SAMPLE_RATE} Hz")
    if type(channels) is not int or channels not in CHANNELS:
        raise MicrophoneRefused("the microphone's sound must have 1 or 2 channels")
    return MicrophoneRequest(on, rate, channels)


def outcome(live: bool, refusal: str | None = None) -> str:
    """The input channel's message telling a viewer whether its microphone reaches the guest, or why not."""
    return json.dumps({"type": "microphone", "live": live, "message": refusal})


@dataclass
class MicrophoneStats:
    microphone_starts: int = 0
    """Times a viewer's microphone went live."""
    microphone_packets: int = 0
    """Pieces of sound (Opus packets, or decoded WebRTC frames) that reached the guest's buffer."""
    microphone_refused: int = 0
    """Requests and pieces of sound refused: without the permission, a second microphone, too large, too fast,
    undecodable, or for a VM that takes no sound in."""


@dataclass(frozen=True)
class PcmFormat:
    """The PCM the source wants: little-endian samples of `dtype`, interleaved `channels`, at `rate`."""

    rate: int
    channels: int
    dtype: np.dtype[Any]

    @property
    def frame_bytes(self) -> int:
        return self.dtype.itemsize * self.channels

    def silence(self, size: int) -> bytes:
        """`size` bytes of silence."""
        return (b"\x80" if self.dtype.kind == "u" else b"\0") * size


class MicrophoneIn:
    """A source's sound input, on the event loop: decoded sound goes in (`write`), the source reads what the
    guest records (`read`), silence where there is none."""

    def __init__(self) -> None:
        self.format: PcmFormat | None = None
        """What the source reads, while the guest has a sound input; None while it has none."""
        self.gain = np.ones(1, dtype=np.float32)
        """Per-channel gain of the guest's capture mixer (0 when muted)."""
        self.live = False
        """Whether a viewer speaks: reads give what it sent, else silence."""
        self._sound_at = 0.0
        """When (monotonic) sound last came."""
        self.reads = 0
        self.nonsilent_reads = 0
        self._buffer = bytearray()
        self._resampler: av.AudioResampler | None = None

    @property
    def available(self) -> bool:
        """Whether the guest has a sound input now."""
        return self.format is not None

    def set_format(self, pcm: PcmFormat | None) -> None:
        """The guest's input stream (None: it has none); what is buffered goes."""
        self.format = pcm
        self.clear()

    def clear(self) -> None:
        """Drop what is buffered and start the next run afresh (a new speaker, a new stream)."""
        self._buffer.clear()
        self._resampler = None

    def heard(self) -> None:
        """A speaker starts: its first sound is waited for (for up to STARVED_S) rather than filled with silence."""
        self._sound_at = time.monotonic()

    def write(self, frame: av.AudioFrame) -> None:
        """Add decoded sound (any rate and layout), resampled to the source's format; the oldest goes past BUFFER_S."""
        pcm = self.format
        if pcm is None:
            return
        self._sound_at = time.monotonic()
        if self._resampler is None:
            layout = "mono" if pcm.channels == 1 else "stereo"
            self._resampler = av.AudioResampler(format="flt", layout=layout, rate=pcm.rate)
        for resampled in self._resampler.resample(frame):
            samples = resampled.to_ndarray().reshape(-1, pcm.channels) * self.gain
            self._buffer += to_pcm(samples, pcm.dtype)
        limit = int(BUFFER_S * pcm.rate) * pcm.frame_bytes
        if len(self._buffer) > limit:
            del self._buffer[: len(self._buffer) - limit]

    def read(self, size: int) -> bytes:
        """At most `size` bytes for the guest. While a viewer speaks, what is buffered, however little (the guest
        then waits for the rest, as it would for a sound card's: no silence is inserted into the speech); else
        silence, as a quiet microphone gives (also once a speaker sent nothing for STARVED_S: a stalled browser
        must not stall the guest's recording)."""
        pcm = self.format
        if pcm is None:
            return b""
        self.reads += 1
        size = min(size, int(MAX_READ_S * pcm.rate) * pcm.frame_bytes)
        size -= size % pcm.frame_bytes
        taken = bytes(self._buffer[:size]) if self.live else b""
        del self._buffer[: len(taken)]
        self.nonsilent_reads += bool(taken)
        if self.live and time.monotonic() - self._sound_at < STARVED_S:
            return taken
        return taken + pcm.silence(size - len(taken))


def to_pcm(samples: np.ndarray, dtype: np.dtype[Any]) -> bytes:
    """Float samples in [-1, 1] as little-endian PCM of `dtype`."""
    clipped = np.clip(samples, -1.0, 1.0)
    if dtype.kind == "f":
        return clipped.astype(dtype).tobytes()
    if dtype.kind == "u":
        return np.round(clipped * 127 + 128).astype(dtype).tobytes()
    top = float(np.iinfo(dtype).max)
    return np.round(clipped * top).astype(dtype).tobytes()


def opus_decoder(channels: int) -> av.AudioCodecContext:
    """libopus decoding to 48 kHz with `channels` (it mixes a packet of the other count to it)."""
    decoder = av.CodecContext.create("libopus", "r")
    assert isinstance(decoder, av.AudioCodecContext)
    decoder.sample_rate = SAMPLE_RATE
    decoder.layout = "mono" if channels == 1 else "stereo"
    return decoder


@dataclass
class _Speaker:
    """The viewer that holds a session's microphone, and what bounds its sound."""

    viewer_id: str
    channels: int
    packets: TokenBucket = field(default_factory=lambda: TokenBucket(MAX_PACKET_RATE, PACKET_BURST))
    sound: TokenBucket = field(
        default_factory=lambda: TokenBucket(MAX_SPEED * SAMPLE_RATE, int(SPEED_BURST_S * SAMPLE_RATE))
    )
    decoder: av.AudioCodecContext | None = None


class Microphone:
    """A session's microphone: which viewer speaks into the guest (one at a time) and the sound it sends.

    Callers check what a viewer's token allows; this checks everything else and raises MicrophoneRefused with
    the reason for the viewer (the refusal counted).
    """

    def __init__(self, sink: MicrophoneIn | None) -> None:
        self.sink = sink
        self.stats = MicrophoneStats()
        self._speaker: _Speaker | None = None

    @property
    def available(self) -> bool:
        """Whether the guest takes sound in now."""
        return self.sink is not None and self.sink.available

    @property
    def speaker(self) -> str | None:
        """The id of the viewer whose microphone is live, if any."""
        return None if self._speaker is None else self._speaker.viewer_id

    def refuse(self, reason: str) -> MicrophoneRefused:
        """A refusal, counted."""
        self.stats.microphone_refused += 1
        return MicrophoneRefused(reason)

    def start(self, viewer_id: str, request: MicrophoneRequest) -> None:
        """The viewer's microphone goes live; MicrophoneRefused if the VM takes no sound or another viewer speaks."""
        if not self.available:
            raise self.refuse("the VM has no sound input")
        if self._speaker is not None and self._speaker.viewer_id != viewer_id:
            raise self.refuse("another viewer's microphone is on; only one at a time")
        if self._speaker is None:
            self.stats.microphone_starts += 1
        self._speaker = _Speaker(viewer_id, request.channels)
        assert self.sink is not None
        self.sink.clear()
        self.sink.live = True
        self.sink.heard()

    def stop(self, viewer_id: str) -> bool:
        """The viewer's microphone goes off; False if it was not live."""
        if self.speaker != viewer_id:
            return False
        self._speaker = None
        if self.sink is not None:
            self.sink.clear()
            self.sink.live = False
        return True

    def frame(self, viewer_id: str, frame: av.AudioFrame) -> None:
        """Decoded sound from a viewer (its WebRTC track) for the guest."""
        speaker = self._speaking(viewer_id)
        if not speaker.sound.take(frame.samples):
            raise self.refuse(f"more than {MAX_SPEED:g} seconds of sound a second")
        assert self.sink is not None
        self.sink.write(frame)
        self.stats.microphone_packets += 1

    def packet(self, viewer_id: str, data: bytes) -> None:
        """An Opus packet from a viewer (its WebSocket) for the guest, decoded here."""
        speaker = self._speaking(viewer_id)
        if len(data) > MAX_PACKET_BYTES:
            raise self.refuse(f"a microphone packet over {MAX_PACKET_BYTES} bytes")
        if not speaker.packets.take():
            raise self.refuse(f"more than {MAX_PACKET_RATE} microphone packets a second")
        if speaker.decoder is None:
            speaker.decoder = opus_decoder(speaker.channels)
        try:
            frames = speaker.decoder.decode(av.Packet(data))
        except (av.FFmpegError, ValueError):
            raise self.refuse("a microphone packet that is not Opus") from None
        for decoded in frames:
            if not speaker.sound.take(decoded.samples):
                raise self.refuse(f"more than {MAX_SPEED:g} seconds of sound a second")
            assert self.sink is not None
            self.sink.write(decoded)
        self.stats.microphone_packets += 1

    def _speaking(self, viewer_id: str) -> _Speaker:
        speaker = self._speaker
        if speaker is None or speaker.viewer_id != viewer_id or not self.available:
            raise self.refuse("this viewer's microphone is not on")
        return speaker
