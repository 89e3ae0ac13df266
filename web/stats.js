/** The stats overlay: frame rate, bitrate and round-trip time from RTCPeerConnection.getStats(). */

const INTERVAL_MS = 1000;

/** The numbers the overlay shows, from two getStats() reports a known time apart. */
export function summarize(report, previous, seconds) {
  let video = null;
  let pair = null;
  for (const entry of report.values()) {
    if (entry.type === "inbound-rtp" && entry.kind === "video") video = entry;
    if (entry.type === "candidate-pair" && entry.nominated && entry.state === "succeeded") pair = entry;
  }
  if (!video) return null;
  const before = previous || video;
  return {
    fps: seconds ? (video.framesDecoded - before.framesDecoded) / seconds : 0,
    kbps: seconds ? ((video.bytesReceived - before.bytesReceived) * 8) / seconds / 1000 : 0,
    rttMs: pair && pair.currentRoundTripTime !== undefined ? pair.currentRoundTripTime * 1000 : null,
    width: video.frameWidth,
    height: video.frameHeight,
    decoded: video.framesDecoded,
    dropped: video.framesDropped || 0,
    lost: video.packetsLost || 0,
    video,
  };
}

export class StatsOverlay {
  /** @param {HTMLElement} element where the numbers are shown */
  constructor(element) {
    this.element = element;
    this.timer = null;
    this.previous = null;
    this.at = 0;
  }

  get visible() {
    return !this.element.hidden;
  }

  /** Show or hide; while shown, refresh every second from `peer()`, the current connection. */
  toggle(peer) {
    this.element.hidden = this.visible;
    clearInterval(this.timer);
    this.previous = null;
    if (this.visible) this.timer = setInterval(() => this.refresh(peer()), INTERVAL_MS);
  }

  async refresh(pc) {
    if (!pc) return;
    const now = performance.now();
    const numbers = summarize(await pc.getStats(), this.previous, this.previous ? (now - this.at) / 1000 : 0);
    if (!numbers) return;
    this.previous = numbers.video;
    this.at = now;
    const rtt = numbers.rttMs === null ? "–" : `${numbers.rttMs.toFixed(1)} ms`;
    this.element.textContent = [
      `${numbers.width ?? "?"}×${numbers.height ?? "?"}  ${numbers.fps.toFixed(1)} fps`,
      `${numbers.kbps.toFixed(0)} kbit/s  rtt ${rtt}`,
      `decoded ${numbers.decoded}  dropped ${numbers.dropped}  lost ${numbers.lost}`,
    ].join("\n");
  }
}
