"""Recording a session's sound: its Opus packets, encoded once, in a track beside the H.264, on one clock.

The sound is the synthetic source's test tone (`?tone=440`), which goes through the session's sound
encoder as a QEMU guest's does; tests/qemu/test_sound.py records a real guest's.
"""

from __future__ import annotations

import asyncio
import time

import av
import numpy as np
import pytest

from tests.recordings import (
    download,
    ffprobe_frames,
    ffprobe_streams,
    first_stamp,
    needs_ffprobe,
    record,
    recorded_sound,
    stop,
)
from tests.sounds import TONE_HZ, peak_hz
from tests.test_fanout import encoded_packets
from tests.test_sound import feed, tone
from vgpustream.api.state import REGISTRY
from vgpustream.media.encoder import TIME_BASE
from vgpustream.media.sound import SAMPLE_RATE, SoundEncoder
from vgpustream.recording.writer import SOUND, VIDEO, MuxerThread, Stamped
from vgpustream.sources.tone import LEVEL

TONE = "synthetic:320x240@30?tone=440"
OPUS_FRAME_S = 0.02
START_BOUND_S = 0.025
"""Audio and video start together in the file: within one Opus frame (and rounding)."""


def loud(samples: np.ndarray) -> np.ndarray:
    """Which 10 ms blocks of `samples` hold the tone (silence, filled in or encoded, decodes to next to nothing)."""
    blocks = samples[: len(samples) // 480 * 480].reshape(-1, 480)
    return np.sqrt(np.mean(blocks**2, axis=1)) > LEVEL / 4


@needs_ffprobe
async def test_a_recording_holds_the_sessions_tone_in_an_opus_track_beside_the_video(make_server, http, tmp_path):
    server = await make_server(source=TONE)
    base = str(server.make_url("/"))
    session = server.app[REGISTRY].get("default")
    recording = await record(http, base)
    await asyncio.sleep(6)
    assert not session.audience.listened(), "no viewer: the session encodes its sound for the recording"
    done = await stop(http, base, recording)
    path = await download(http, base, recording, tmp_path / "tone.mp4")

    video, sound = ffprobe_streams(path)
    print(f"ffprobe: {video}\n         {sound}\nrecording: {done}\nsound encoder: {session.sound.stats}")
    assert (video["codec_name"], sound["codec_name"]) == ("h264", "opus")
    assert (sound["sample_rate"], sound["channels"]) == (str(SAMPLE_RATE), 2)
    assert abs(float(sound["start_time"]) - float(video["start_time"])) <= START_BOUND_S
    packets, duration = int(sound["nb_read_packets"]), float(sound["duration"])
    assert abs(packets * OPUS_FRAME_S - duration) <= 2 * OPUS_FRAME_S, "one 20 ms packet after the other"
    assert abs(duration - done["duration"]) <= 0.1, "the sound lasts as long as the recorded frames"
    # the session's packets, all but the few before its first one came after the first frame (silence)
    assert packets - 5 <= done["audio_packets"] <= packets and done["audio_dropped"] == 0
    assert done["audio_packets"] <= session.sound.stats.packets, "one encode: the recorder adds none"

    start, samples = recorded_sound(path)
    assert abs(start) <= START_BOUND_S
    steady = samples[SAMPLE_RATE // 2 : -SAMPLE_RATE // 10]  # the last packets of sound come after the stop
    frequency = peak_hz(steady)
    print(f"decoded {len(samples) / SAMPLE_RATE:.3f} s of sound from {start * 1000:.1f} ms: {frequency:.1f} Hz")
    assert abs(frequency - TONE_HZ) <= 2
    assert loud(steady).all(), "the tone throughout: no silence filled in while the session sent sound"


@needs_ffprobe
async def test_sound_that_starts_after_the_recording_and_stops_again_is_in_sync_with_the_picture(
    make_server, http, tmp_path
):
    server = await make_server(source=TONE)
    base = str(server.make_url("/"))
    session = server.app[REGISTRY].get("default")
    tone = session.capture._thread.source._tone
    while not session.sound_available:  # the capture loop opens the source, which starts the tone
        await asyncio.sleep(0.01)
    await tone.stop()  # the guest is silent when the recording starts
    recording = await record(http, base)
    await asyncio.sleep(1.5)
    played_from = time.time()
    await tone.start()
    await asyncio.sleep(1.5)
    played_to = time.time()
    await tone.stop()
    await asyncio.sleep(1.0)
    done = await stop(http, base, recording)
    path = await download(http, base, recording, tmp_path / "later.mp4")

    video, sound = ffprobe_streams(path)
    assert (video["codec_name"], sound["codec_name"]) == ("h264", "opus")
    assert abs(int(sound["nb_read_packets"]) * OPUS_FRAME_S - done["duration"]) <= 0.1, "silence filled in"
    first_frame_at = first_stamp(path).time_ms / 1000  # when the first picture was drawn
    start, samples = recorded_sound(path)
    blocks = loud(samples)
    heard_from = start + np.argmax(blocks) * 0.01
    heard_to = start + (len(blocks) - np.argmax(blocks[::-1])) * 0.01
    print(
        f"tone played {played_from - first_frame_at:.3f}..{played_to - first_frame_at:.3f} s after the first frame, "
        f"heard in the file at {heard_from:.3f}..{heard_to:.3f} s; {done}"
    )
    assert abs(heard_from - (played_from - first_frame_at)) <= 0.04, "sound and picture on one clock"
    assert abs(heard_to - (played_to - first_frame_at)) <= 0.06
    run = samples[round((heard_from - start + 0.1) * SAMPLE_RATE) : round((heard_to - start - 0.1) * SAMPLE_RATE)]
    assert abs(peak_hz(run) - TONE_HZ) <= 3
    assert abs(blocks.sum() * 0.01 - (played_to - played_from)) <= 0.1, "the tone only while it played"


@needs_ffprobe
async def test_a_recording_of_a_session_without_sound_has_only_video(make_server, http, tmp_path):
    server = await make_server(source="synthetic:320x240@30")
    base = str(server.make_url("/"))
    recording = await record(http, base)
    await asyncio.sleep(1)
    done = await stop(http, base, recording)
    path = await download(http, base, recording, tmp_path / "silent.mp4")
    assert [stream["codec_name"] for stream in ffprobe_streams(path)] == ["h264"]
    assert done["audio_packets"] == 0


@needs_ffprobe
def test_sound_timed_out_of_order_is_left_out_and_the_video_stays_whole(tmp_path):
    video = encoded_packets(60, keyframe_every=30)
    epoch = time.time() - 10
    first = epoch + float(video[0].pts * TIME_BASE)
    sound: list[av.Packet] = []
    encoder = SoundEncoder(sound.extend, lambda: True, epoch)
    # runs of 0.1 s: one before the first frame, one the encoder times anew 50 ms into the one before it,
    # and one long after the last frame
    for ends_at in (first - 0.1, first + 0.15, first + 0.2, first + 2.0):
        feed(encoder, tone(0.1, rate=SAMPLE_RATE), ends_at, rate=SAMPLE_RATE)
        encoder.end_run()
    outcome: list[tuple[str | None, bool]] = []
    path = tmp_path / "odd.mp4"
    writer = MuxerThread(path, 1 << 30, lambda: None, lambda *done: outcome.append(done), (VIDEO, SOUND))
    writer.start()
    items = [Stamped(VIDEO, video[0]), *(Stamped(SOUND, p) for p in sound), *(Stamped(VIDEO, p) for p in video[1:])]
    for item in items:
        assert writer.put(item)
    writer.stop()
    writer.join(30)

    print(f"{len(sound)} sound packets given, {writer.stats}")
    assert outcome == [(None, False)]
    assert ffprobe_frames(path) == len(video) == writer.stats.frames
    assert 0 < writer.stats.audio_packets < len(sound) - 5, "those before the first frame or overlapping left out"
    start, samples = recorded_sound(path)  # gapless, one 20 ms frame after the other
    assert abs(start) <= START_BOUND_S
    assert start + len(samples) / SAMPLE_RATE == pytest.approx(2.0, abs=0.02), "up to the run after the last frame"
