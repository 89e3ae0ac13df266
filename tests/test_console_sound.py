"""The console plays the session's sound over either transport: WebRTC's audio track, or the WebSocket's Opus
packets decoded by WebCodecs and played by an AudioWorklet (web/wssound.js). The synthetic source's tone is
heard in the page, at its pitch, once the speaker button is pressed."""

from __future__ import annotations

import pytest

from tests.browser import chromium, playing_console
from tests.test_auth import issue

TONE_HZ = 440
HEAR = """async () => {
  // what the console's <video> plays: its stream's audio tracks, through an analyser
  const tracks = document.getElementById("screen").srcObject.getAudioTracks();
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 8192;
  context.createMediaStreamSource(new MediaStream(tracks)).connect(analyser);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  let loudest = 1;
  for (let bin = 1; bin < bins.length; bin++) if (bins[bin] > bins[loudest]) loudest = bin;
  const hz = (loudest * context.sampleRate) / analyser.fftSize;
  await context.close();
  return { tracks: tracks.length, hz, db: bins[loudest] };
}"""


@pytest.mark.browser
@pytest.mark.parametrize("transport", ["webrtc", "websocket"])
async def test_the_console_plays_the_tone_once_the_speaker_is_on(make_server, http, transport):
    server = await make_server(source=f"synthetic:320x240@30?tone={TONE_HZ}")
    issued = await issue(http, server, role="view", transport=transport)
    async with chromium() as browser:
        page, errors = await playing_console(browser, issued["console_url"])
        speaker = page.locator("#speaker")
        await speaker.wait_for(state="visible", timeout=10_000)
        assert await page.evaluate("document.getElementById('screen').muted"), "muted until the user asks"
        await speaker.click()
        assert await speaker.get_attribute("aria-pressed") == "true"
        heard = await page.evaluate(HEAR)
        assert heard["tracks"] == 1, heard
        assert abs(heard["hz"] - TONE_HZ) < 10 and heard["db"] > -60, heard
        assert await page.evaluate("window.vgpustream.transport") == transport
        assert not errors, errors
