"""A viewer's microphone into a real guest: the rig's Linux records its sound card with `arecord`
(tests/qemu/record-mic.sh) while Chromium's console sends it a 440 Hz tone from a file.

What the guest records comes back to the host on its standard output as it is recorded; the host times its
arrival, which bounds the delay from the browser to the guest's recording from above (it adds the way back).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from tests.browser import chromium, playing_console
from tests.qemu.rig_guest import RigGuest
from tests.sounds import TONE_HZ, onsets, peak_hz, write_bursts
from tests.test_auth import issue
from vgpustream.api.state import AUDIT, REGISTRY
from vgpustream.input.microphone import MicrophoneIn
from vgpustream.testing.qemu import wait_for

RECORD_S = 400
"""The guest records this long; the tests take what they need of it."""
GUEST_CARD = "-audiodev dbus,id=snd0 -device intel-hda -device hda-duplex,audiodev=snd0"
MARKER = b"RECORDING\n"
"""What tests/qemu/record-mic.sh prints before the raw samples."""
GUEST_RATE = 48_000
BURST_PERIOD_S, BURST_S = 2.0, 0.5
FAKE_MICROPHONE = (
    # getUserMedia needs a capture device, and this machine has none: Chromium's fake one stands in
    "--use-fake-device-for-media-stream",
    # and plays our WAV instead of its own beeps (a 440 Hz burst every 2 s, in a loop)
    "--use-file-for-fake-audio-capture={wav}",
)
PAGE_ONSETS = """async (seconds) => {
  // when the console's own microphone track starts each burst, by the page's clock (Date.now(), the host's)
  const track = window.vgpustream.microphone.track;
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 256;
  context.createMediaStreamSource(new MediaStream([track])).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const onsets = [];
  let loud = true; // a burst already under way when this starts is not a start

  for (const end = Date.now() + seconds * 1000; Date.now() < end; ) {
    analyser.getFloatTimeDomainData(samples);
    const now = Date.now();
    const peak = samples.reduce((top, sample) => Math.max(top, Math.abs(sample)), 0);
    if (peak > 0.06 && !loud) onsets.push(now);
    loud = peak > 0.06;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  context.close();
  return onsets;
}"""


@pytest.fixture(scope="module")
def recording_guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RigGuest]:
    """The rig's guest with an HDA card with an input on QEMU's D-Bus audio, recording it (record-mic.sh)."""
    guest = RigGuest(
        tmp_path_factory.mktemp("microphone"),
        "audiodev=snd0",
        GUEST_CARD,
        ["tests/qemu/record-mic.sh", str(RECORD_S)],
    )
    yield guest
    guest.stop()


class ServerOnsets:
    """When (host time, ms) the server's decoded microphone sound starts each burst: what reaches the guest's
    buffer, watched as it is written into it."""

    def __init__(self, sink: MicrophoneIn) -> None:
        self.onsets: list[float] = []
        self._loud = True  # a burst under way when the microphone goes live is not a start
        write = sink.write

        def watched(frame: av.AudioFrame) -> None:
            samples = frame.to_ndarray()
            peak = float(np.abs(samples).max()) * (32768 if samples.dtype.kind == "f" else 1)
            if peak > 2000 and not self._loud:
                self.onsets.append(time.time() * 1000)
            self._loud = peak > 2000
            write(frame)

        sink.write = watched  # type: ignore[method-assign]


def delays(starts: list[float], arrivals: list[float]) -> list[float]:
    """For each arrival (ms), how long after the last start before it, where that is within a burst period."""
    found = []
    for arrived in arrivals:
        before = [start for start in starts if start <= arrived]
        if before and arrived - before[-1] < BURST_PERIOD_S * 1000:
            found.append(arrived - before[-1])
    return found


async def click_microphone(page) -> None:
    """Click the console's Microphone button, from its More menu where the toolbar had no room for it."""
    if await page.locator("#more-menu #microphone").count():
        await page.locator("#more-toggle").click()
    await page.locator("#microphone").click()


def bursts(starts: list[int], apart: float) -> list[int]:
    """The starts that come at least `apart` samples after the one before."""
    return [start for before, start in zip([-apart, *starts], starts, strict=False) if start - before >= apart]


class GuestRecording:
    """What the guest records, as it reaches the host (its standard output, into the guest's log): the samples,
    and when each of them had arrived (host time), polled every few milliseconds."""

    def __init__(self, log: Path) -> None:
        self._log = log
        self.data = b""
        self.arrivals: list[tuple[float, int]] = []
        """(time.time(), samples received by then), at each poll that brought samples."""
        self._watching = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        start = None
        while True:
            data = self._log.read_bytes()
            now = time.time()
            if start is None and (found := data.find(MARKER)) >= 0:
                start = found + len(MARKER)
            if start is not None and len(data) - start > len(self.data):
                self.data = data[start:]
                self.arrivals.append((now, len(self.data) // 2))
            await asyncio.sleep(0.005)

    @property
    def samples(self) -> np.ndarray:
        return np.frombuffer(self.data[: len(self.data) // 2 * 2], dtype="<i2")

    def arrival(self, sample: int) -> float:
        """When the host had received sample number `sample`."""
        return next(when for when, count in self.arrivals if count > sample)

    def stop(self) -> None:
        self._watching.cancel()


@pytest.mark.parametrize("transport", ["webrtc", "websocket"])
async def test_chromium_s_microphone_reaches_the_guest_s_recording_at_440_hz(
    recording_guest: RigGuest, make_server, http, tmp_path: Path, transport: str
):
    """Over WebRTC the console's microphone track is Opus on its audio transceiver, decoded by aiortc; over the
    WebSocket, Opus packets from WebCodecs' AudioEncoder, decoded by PyAV."""
    server = await make_server(source=f"qemu-dbus:{recording_guest.bus.address}")
    session = server.app[REGISTRY].get("default")
    microphone = session.audience.microphone
    await asyncio.to_thread(wait_for, lambda: microphone.available, 60, "QEMU's sound input")
    recording = GuestRecording(recording_guest.log)
    at_server = ServerOnsets(microphone.sink)
    try:
        await asyncio.to_thread(wait_for, lambda: len(recording.data) > 0, 120, "the guest's recording")
        wav = tmp_path / "bursts.wav"
        write_bursts(wav, BURST_PERIOD_S, BURST_S)
        issued = await issue(http, server, role="control", microphone="use", transport=transport)
        flags = [flag.format(wav=wav) for flag in FAKE_MICROPHONE]
        async with chromium(*flags, permissions=["microphone"]) as browser:
            page, errors = await playing_console(browser, issued["console_url"])
            assert await page.evaluate("window.vgpustream.transport") == transport
            button = page.locator("#microphone")
            await page.wait_for_function("() => !document.getElementById('microphone').hidden", timeout=30_000)
            assert await button.get_attribute("aria-pressed") == "false"
            await click_microphone(page)
            await page.wait_for_function("() => document.getElementById('microphone').ariaPressed === 'true'")
            assert await button.locator(".label").text_content() == "Mic on", "shown live"
            live_from = len(recording.samples)
            page_onsets = await page.evaluate(PAGE_ONSETS, 12)
            await asyncio.sleep(1.5)  # what the guest recorded of the last burst reaches the host
            await click_microphone(page)
            await page.wait_for_function("() => document.getElementById('microphone').ariaPressed === 'false'")
            assert errors == []
        heard = recording.samples[live_from:]
        # a burst's start (a dropout within a burst, where the TCG guest stalled, starts no new one)
        guest_onsets = [live_from + onset for onset in bursts(onsets(heard), BURST_PERIOD_S / 2 * GUEST_RATE)]
        print(f"page onsets {page_onsets}; guest onsets (samples) {guest_onsets}; {microphone.stats}")
        tone = np.concatenate([recording.samples[at : at + round(0.4 * GUEST_RATE)] for at in guest_onsets])
        frequency = peak_hz(tone.astype(np.float64))
        print(f"the guest recorded {frequency:.1f} Hz")
        assert abs(frequency - TONE_HZ) <= 5
        latencies = delays(page_onsets, [recording.arrival(at) * 1000 for at in guest_onsets])
        to_server = delays(page_onsets, at_server.onsets)
        print(f"browser to guest recording (as it reaches the host), ms: {[round(ms) for ms in latencies]}")
        print(f"of which browser to the server's decoded sound, ms: {[round(ms) for ms in to_server]}")
        median, worst = np.median(latencies), max(latencies)
        print(f"{transport}: median {median:.0f} ms, max {worst:.0f} ms over {len(latencies)} bursts; to the server")
        print(f"{transport}: median {np.median(to_server):.0f} ms, max {max(to_server):.0f} ms")
        assert len(latencies) >= 4, "the guest heard the bursts, one by one"
        events = [e.type for e in server.app[AUDIT].events("default", limit=1000) if e.type.startswith("microphone.")]
        assert events == ["microphone.started", "microphone.stopped"]
    finally:
        recording.stop()
