"""Sound from a real QEMU (`-audiodev dbus`, an emulated Intel HDA card) to aiortc viewers and recordings,
encoded once.

The guest is the rig's Linux (tests/qemu/rig_guest.py) on `-display dbus`, playing a 440 Hz sine with
ALSA's speaker-test (tests/qemu/play-tone.sh). What the viewers hear is decoded by aiortc, what a
recording holds by PyAV, and its frequency found by FFT.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import numpy as np
import pytest

from tests.qemu.rig_guest import RigGuest
from tests.recordings import download, ffprobe_streams, info, needs_ffprobe, record, recorded_sound, stop
from tests.sounds import TONE_HZ, hear, peak_hz
from tests.test_console import console_page
from vgpustream.api.state import REGISTRY
from vgpustream.media.sound import SAMPLE_RATE
from vgpustream.testing.qemu import wait_for

PLAY_S = 240  # the guest plays this long; the tests take what they need of it
SOUND_CARD = "-audiodev dbus,id=snd0 -device intel-hda -device hda-output,audiodev=snd0"


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RigGuest]:
    """The rig's guest with its sound on QEMU's D-Bus display, playing the tone."""
    guest = RigGuest(
        tmp_path_factory.mktemp("tone"), "audiodev=snd0", SOUND_CARD, ["tests/qemu/play-tone.sh", str(PLAY_S)]
    )
    yield guest
    guest.stop()


async def sound_session(make_server, guest: RigGuest):
    """A server on the guest's display, once the guest is playing (its boot takes about 20 s under TCG)."""
    server = await make_server(source=f"qemu-dbus:{guest.bus.address}")
    session = server.app[REGISTRY].get("default")
    await asyncio.to_thread(wait_for, lambda: session.capture.sound.available, 60, "QEMU's audio listener")
    return server, session


async def test_a_viewer_hears_the_guests_440_hz_on_the_videos_clock(guest: RigGuest, make_server, viewers, http):
    server, session = await sound_session(make_server, guest)
    lags: dict[str, list[float]] = {"video": [], "audio": []}

    def timed(kind: str, publish, of=lambda packets: packets):
        def publish_and_time(packets, *args):
            now = time.time()
            lags[kind] += [now - session.capture.epoch - float(p.pts * p.time_base) for p in of(packets)]
            return publish(packets, *args)

        return publish_and_time

    # watch what the audience is given: each packet's age on the shared clock when it is published (the video's
    # come by rendition)
    session.audience.publish = timed(
        "video", session.audience.publish, lambda by: [p for e in by.values() for p in e.packets]
    )
    session.audience.publish_sound = timed("audio", session.audience.publish_sound)
    viewer = await viewers(server, sound=True)
    heard = await hear(viewer, 2.0)
    frequency = peak_hz(heard)
    print(f"heard {frequency:.1f} Hz; encode {session.sound.stats}")
    assert abs(frequency - TONE_HZ) <= 5
    audio_lag, video_lag = float(np.median(lags["audio"])), float(np.median(lags["video"]))
    print(f"published {audio_lag * 1000:.1f} ms (audio) and {video_lag * 1000:.1f} ms (video) after capture")
    assert abs(audio_lag - video_lag) < 0.1, "audio and video timestamps are not on one clock"
    async with http.get(server.make_url("/api/v1/sessions/default")) as response:
        described = await response.json()
    assert described["sound"] is True and described["stats"]["audio_packets"] >= 100
    async with http.get(server.make_url("/metrics")) as response:
        assert 'vgpustream_session_audio_packets_total{session="default"}' in await response.text()


async def packets_sent(session) -> list[int]:
    """How many audio RTP packets the server has sent each of its viewers."""
    counts = []
    for viewer in session.audience:
        (sender,) = [s for s in viewer._pc.getSenders() if s.kind == "audio"]
        (stats,) = [s for s in (await sender.getStats()).values() if s.type == "outbound-rtp"]
        counts.append(stats.packetsSent)
    return counts


async def test_eight_viewers_hear_the_same_packets_of_one_encode(guest: RigGuest, make_server, viewers):
    server, session = await sound_session(make_server, guest)
    listeners = [await viewers(server, sound=True) for _ in range(8)]
    heard = await asyncio.gather(*(hear(viewer, 0.5) for viewer in listeners))
    assert all(abs(peak_hz(samples) - TONE_HZ) <= 5 for samples in heard)
    started, encoded, sent = time.monotonic(), session.sound.stats.encoded_frames, await packets_sent(session)
    await asyncio.sleep(2)
    encoded = session.sound.stats.encoded_frames - encoded
    sent = [after - before for after, before in zip(await packets_sent(session), sent, strict=True)]
    elapsed = time.monotonic() - started
    print(f"{elapsed:.2f} s: {encoded} frames encoded, sent to the 8 viewers: {sent}; {session.sound.stats}")
    # 50 frames a second, more when QEMU catches up after the (TCG) guest stalled; 8 encodes would be 800
    assert encoded <= elapsed * 50 * 1.5 + 10, "one encode, whatever the number of viewers"
    assert encoded >= 50, "the guest kept playing"
    assert all(abs(count - encoded) <= 3 for count in sent), "each viewer is sent every packet"


@needs_ffprobe
async def test_a_recording_holds_the_guests_sound_in_an_opus_track(guest: RigGuest, make_server, http, tmp_path):
    server, session = await sound_session(make_server, guest)
    base = str(server.make_url("/"))
    recording = await record(http, base)  # the recording listens: the session encodes the sound for it
    deadline = time.monotonic() + 120
    while (await info(http, base, recording))["audio_packets"] == 0:  # the guest may still be booting
        assert time.monotonic() < deadline, "the recording never got the guest's sound"
        await asyncio.sleep(0.2)
    await asyncio.sleep(4)
    done = await stop(http, base, recording)
    path = await download(http, base, recording, tmp_path / "guest.mp4")

    video, sound = ffprobe_streams(path)
    print(f"ffprobe: {video}\n         {sound}\nrecording: {done}\nsound encoder: {session.sound.stats}")
    assert (video["codec_name"], sound["codec_name"]) == ("h264", "opus")
    assert float(video["start_time"]) == float(sound["start_time"]) == 0.0
    packets, duration = int(sound["nb_read_packets"]), float(sound["duration"])
    assert abs(packets * 0.02 - duration) <= 0.04, "one 20 ms packet after the other, silence filled in"
    # 50 packets a second of the guest's sound for the 4 s at least (fewer where the TCG guest stalled)
    assert done["audio_packets"] >= 150 and done["audio_dropped"] == 0
    assert done["audio_packets"] <= session.sound.stats.packets, "one encode: the recorder adds none"
    _, samples = recorded_sound(path)
    frequency = peak_hz(samples[-3 * SAMPLE_RATE : -SAMPLE_RATE // 5])
    print(f"recorded {frequency:.1f} Hz")
    assert abs(frequency - TONE_HZ) <= 5


ANALYSE = """async () => {
  // WebAudio's analyser on the console's audio track: the loudest frequency once there is sound
  const receiver = window.vgpustream.pc.getReceivers().find((r) => r.track.kind === "audio");
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 32768;
  analyser.smoothingTimeConstant = 0;
  context.createMediaStreamSource(new MediaStream([receiver.track])).connect(analyser);
  const bins = new Float32Array(analyser.frequencyBinCount);
  for (let i = 0; i < 240; i++) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    analyser.getFloatFrequencyData(bins);
    const loudest = bins.indexOf(Math.max(...bins));
    if (bins[loudest] > -40) return loudest * context.sampleRate / analyser.fftSize;
  }
  return null;
}"""


@pytest.mark.browser
async def test_the_console_plays_the_tone_once_the_speaker_is_clicked(guest: RigGuest, make_server, http):
    server, _ = await sound_session(make_server, guest)
    async with console_page(server, http, 1) as (page, errors):
        speaker = page.locator("#speaker")
        await speaker.wait_for(state="visible", timeout=30_000)
        assert await page.evaluate("document.getElementById('screen').muted"), "muted until the user asks"
        await speaker.click()
        assert not await page.evaluate("document.getElementById('screen').muted")
        assert await speaker.get_attribute("aria-pressed") == "true"
        await page.locator("#volume").fill("0.5")
        assert await page.evaluate("document.getElementById('screen').volume") == 0.5
        frequency = await page.evaluate(ANALYSE)
        print(f"Chromium's analyser: {frequency} Hz")
        assert frequency is not None and abs(frequency - TONE_HZ) <= 5
        assert errors == []
