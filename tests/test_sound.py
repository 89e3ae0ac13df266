"""Sound without a VM: QEMU's AudioOutListener fed calls no sane QEMU sends, the session's Opus encoder, and
the synthetic source's test tone through it.

The real-QEMU test (a guest playing a tone, heard by aiortc viewers) is tests/qemu/test_sound.py; these
feed the listener's handler D-Bus messages directly, for the hostile cases a real guest cannot produce.
"""

from __future__ import annotations

import time

import av
import numpy as np
import pytest
from dbus_fast import Message

from tests.conftest import test_settings as settings_for_tests
from tests.sounds import TONE_HZ, hear, peak_hz
from tests.test_qemu_listener import call as listener_call
from vgpustream.api.state import REGISTRY
from vgpustream.control.store import SessionSpec, Store
from vgpustream.errors import VgpuStreamError
from vgpustream.media.sound import FRAME_SAMPLES, SAMPLE_RATE, TIME_BASE, Pcm, SoundEncoder, SoundOut
from vgpustream.registry import SessionRegistry
from vgpustream.sources.qemu.audio import MAX_STREAMS, QemuAudioOut

STREAM = 94_384_166_418_272  # an id as QEMU 7.2 gives them (a pointer)
QEMU_FORMAT = [16, True, False, 44_100, 2, 4, 176_400, False]  # what QEMU 7.2 announces


def call(member: str, signature: str, body: list) -> Message:
    return listener_call(member, signature, body, "AudioOutListener")


def tone(seconds: float, rate: int = 44_100, hz: float = 440.0, level: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    wave = (level * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    return np.stack([wave, wave], axis=1)


class Heard:
    """Stands where the session's encoder goes, and keeps what the listener delivers."""

    def __init__(self) -> None:
        self.chunks: list[Pcm] = []
        self.runs_ended = 0

    def write(self, pcm: Pcm) -> None:
        self.chunks.append(pcm)

    def end_run(self) -> None:
        self.runs_ended += 1


@pytest.fixture
def audio() -> tuple[QemuAudioOut, Heard]:
    out = SoundOut()
    heard = Heard()
    out.encoder = heard  # type: ignore[assignment]
    listener = QemuAudioOut(out)
    assert listener._on_call(call("Init", "tybbuyuub", [STREAM, *QEMU_FORMAT])).error_name is None
    return listener, heard


def accepted(listener: QemuAudioOut, member: str, signature: str, body: list) -> bool:
    return listener._on_call(call(member, signature, body)).error_name is None


def test_an_enabled_stream_delivers_float_samples_with_the_guests_volume(audio):
    listener, heard = audio
    pcm = tone(0.02).tobytes()
    assert accepted(listener, "Write", "tay", [STREAM, pcm])
    assert heard.chunks == [], "a stream QEMU has not enabled plays nothing"
    assert accepted(listener, "SetEnabled", "tb", [STREAM, True])
    assert accepted(listener, "SetVolume", "tbay", [STREAM, False, bytes([255, 51])])
    assert accepted(listener, "Write", "tay", [STREAM, pcm])
    (chunk,) = heard.chunks
    assert chunk.rate == 44_100 and chunk.samples.shape == (882, 2)
    assert chunk.samples[:, 0].max() == pytest.approx(0.5, abs=0.01)
    assert chunk.samples[:, 1].max() == pytest.approx(0.1, abs=0.01), "the right channel at 51/255"
    assert accepted(listener, "SetVolume", "tbay", [STREAM, True, bytes([255, 255])])
    assert accepted(listener, "Write", "tay", [STREAM, pcm])
    assert len(heard.chunks) == 1, "a muted stream plays nothing"
    assert accepted(listener, "SetEnabled", "tb", [STREAM, False]) and heard.runs_ended == 1


@pytest.mark.parametrize(
    ("member", "signature", "body"),
    [
        ("Write", "tay", [STREAM + 1, bytes(4)]),  # a stream never announced
        ("Write", "tay", [STREAM, bytes(3)]),  # not whole frames
        ("Write", "tay", [STREAM, bytes(4 * 44_100 + 4)]),  # more than a second at once
        ("Write", "ay", [bytes(4)]),  # the wrong signature
        ("SetVolume", "tbay", [STREAM, False, bytes(3)]),  # a volume for three channels of two
        ("SetEnabled", "tb", [STREAM + 1, True]),
        ("Fini", "t", [STREAM + 1]),
        ("Init", "tybbuyuub", [1, 24, True, False, 44_100, 2, 6, 264_600, False]),  # 24-bit
        ("Init", "tybbuyuub", [1, 16, True, False, 44_100, 2, 4, 176_400, True]),  # big-endian
        ("Init", "tybbuyuub", [1, 16, True, False, 44_100, 6, 12, 529_200, False]),  # 5.1
        ("Init", "tybbuyuub", [1, 16, True, False, 0, 2, 4, 0, False]),  # no rate
        ("Init", "tybbuyuub", [1, 16, True, False, 44_100, 2, 2, 88_200, False]),  # frames that do not fit
    ],
)
def test_calls_that_do_not_fit_the_stream_are_refused_and_counted(audio, member, signature, body):
    listener, heard = audio
    assert accepted(listener, "SetEnabled", "tb", [STREAM, True])
    reply = listener._on_call(call(member, signature, body))
    assert reply.error_name == "org.qemu.Display1.Error.Invalid"
    assert listener.stats.refused == 1 and heard.chunks == []
    assert accepted(listener, "Write", "tay", [STREAM, tone(0.01).tobytes()]), "the stream goes on"


def test_at_most_max_streams_are_kept(audio):
    listener, _ = audio
    for stream in range(1, MAX_STREAMS):
        assert accepted(listener, "Init", "tybbuyuub", [stream, *QEMU_FORMAT])
    assert not accepted(listener, "Init", "tybbuyuub", [MAX_STREAMS, *QEMU_FORMAT])
    assert accepted(listener, "Fini", "t", [1])
    assert accepted(listener, "Init", "tybbuyuub", [MAX_STREAMS, *QEMU_FORMAT])


def decode(packets: list[av.Packet]) -> np.ndarray:
    decoder = av.CodecContext.create("libopus", "r")
    frames = [frame.to_ndarray().reshape(-1, 2) for p in packets for frame in decoder.decode(av.Packet(bytes(p)))]
    return np.concatenate(frames).astype(np.float64).sum(axis=1)


def feed(encoder: SoundEncoder, samples: np.ndarray, arrived: float, rate: int = 44_100) -> None:
    """Write `samples` (int16) as QEMU does, 1024 frames at a time, the last arriving at `arrived`."""
    step = 1024
    ends = range(step, len(samples) + step, step)
    for end in ends:
        chunk = samples[end - step : end].astype(np.float32) / 32768
        encoder.write(Pcm(chunk, rate, arrived - (len(samples) - min(end, len(samples))) / rate))


def test_one_encode_gives_20_ms_opus_packets_timed_on_the_sessions_clock():
    packets: list[av.Packet] = []
    epoch = time.time() - 100
    encoder = SoundEncoder(packets.extend, lambda: True, epoch)
    arrived = time.time()
    feed(encoder, tone(1.0), arrived)
    assert 48 <= len(packets) <= 50 and encoder.stats.encoded_frames == len(packets)
    assert all(p.is_keyframe and p.time_base == TIME_BASE for p in packets)
    assert np.all(np.diff([p.pts for p in packets]) == FRAME_SAMPLES)
    started = packets[0].pts / SAMPLE_RATE + epoch
    assert abs(started - (arrived - 1.0)) < 0.02, "the first packet is timed when its sound began"
    heard = decode(packets)[4800:]
    spectrum = np.abs(np.fft.rfft(heard * np.hanning(len(heard))))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(heard) - 440) < 2


def test_silence_and_nobody_listening_cost_no_packets():
    packets: list[av.Packet] = []
    listening = False
    encoder = SoundEncoder(packets.extend, lambda: listening, time.time())
    feed(encoder, tone(0.5), time.time())
    assert packets == [] and encoder.stats.encoded_frames == 0, "nobody listens: nothing encoded"
    listening = True
    feed(encoder, np.zeros((44_100, 2), dtype="<i2"), time.time())
    assert packets == [] and encoder.stats.silent_frames >= 48, "a silent guest sends nothing"
    feed(encoder, tone(0.2), time.time() + 5)
    assert len(packets) >= 9, "sound after silence is sent again"


async def test_a_viewer_hears_the_synthetic_tone_through_the_sessions_one_encoder(make_server, viewers, http):
    started = time.monotonic()
    server = await make_server(source="synthetic:320x240@30?tone=440")
    listeners = [await viewers(server, sound=True) for _ in range(2)]
    heard = [await hear(viewer, 1.0) for viewer in listeners]
    frequencies = [peak_hz(samples) for samples in heard]
    print(f"heard {frequencies} Hz")
    assert all(abs(frequency - TONE_HZ) <= 5 for frequency in frequencies)
    async with http.get(server.make_url("/api/v1/sessions/default")) as response:
        described = await response.json()
    assert described["sound"] is True and described["stats"]["audio_packets"] >= 50
    encoded, elapsed = server.app[REGISTRY].get("default").sound.stats.encoded_frames, time.monotonic() - started
    print(f"{encoded} frames encoded in {elapsed:.2f} s")
    assert encoded <= elapsed * 50 + 5, "one encode for both viewers: 50 frames a second at most"


async def test_a_silent_source_says_so_and_answers_audio_inactive(make_server, viewers, http):
    server = await make_server()
    viewer = await viewers(server, sound=True)
    audio = viewer.pc.remoteDescription.sdp.split("m=audio", 1)[1].split("\nm=", 1)[0]
    assert "a=inactive" in audio
    async with http.get(server.make_url("/api/v1/sessions/default")) as response:
        described = await response.json()
    async with http.get(server.make_url("/api/v1/sessions/default/planes")) as response:
        planes = await response.json()
    assert described["sound"] is False and planes["sound"] is False
    assert described["stats"]["audio_packets"] == 0


async def test_the_sound_bitrate_is_a_setting_within_opus_range(tmp_path):
    for wrong in (1_000, 600_000):
        with pytest.raises(VgpuStreamError):
            settings_for_tests(tmp_path, sound_bitrate=wrong)
    registry = SessionRegistry(settings_for_tests(tmp_path, sound_bitrate=32_000), Store(tmp_path / "state.sqlite3"))
    session = registry._session(SessionSpec(id="vm", source="qemu-dbus:unix:path=/nonexistent/bus.sock"))
    assert session.sound is not None and session.sound.bitrate == 32_000
    assert registry._session(SessionSpec(id="pattern", source="synthetic:320x240@5")).sound is None
