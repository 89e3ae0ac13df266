/**
 * The stats overlay: frame rate, bitrate and round-trip time from RTCPeerConnection.getStats(), and
 * the glass-to-glass delay of the last second (delay.js).
 */

const INTERVAL_MS = 1000;

/** The candidate pair ICE chose: the transport's selected pair, else a nominated one that works. */
function selectedPair(report) {
  for (const entry of report.values()) {
    if (entry.type === "transport" && entry.selectedCandidatePairId) return report.get(entry.selectedCandidatePairId);
  }
  for (const entry of report.values()) {
    if (entry.type === "candidate-pair" && entry.nominated && entry.state === "succeeded") return entry;
  }
  return null;
}

/**
 * The numbers the overlay shows, from a getStats() report and the video's inbound-rtp entry of
 * the report taken `seconds` earlier (rates are 0 without one).
 * @param {RTCStatsReport} report
 * @param {object|null} previous the earlier inbound-rtp entry, from the same connection
 * @param {number} seconds
 * @returns {object|null} null while nothing is received yet
 */
export function summarize(report, previous, seconds) {
  const video = [...report.values()].find((entry) => entry.type === "inbound-rtp" && entry.kind === "video");
  if (!video) return null;
  const rate = (key, scale = 1) => (previous && seconds > 0 ? ((video[key] - previous[key]) * scale) / seconds : 0);
  const rtt = selectedPair(report)?.currentRoundTripTime;
  return {
    fps: rate("framesDecoded"),
    kbps: rate("bytesReceived", 8 / 1000),
    rttMs: rtt === undefined ? null : rtt * 1000,
    width: video.frameWidth,
    height: video.frameHeight,
    decoded: video.framesDecoded ?? 0,
    dropped: video.framesDropped ?? 0,
    lost: video.packetsLost ?? 0,
    video,
  };
}

/** The overlay element, refreshed every second while shown. */
export class StatsOverlay {
  /**
   * @param {HTMLElement} element where the numbers are shown
   * @param {() => object|null} delay the last second's glass-to-glass delay ({p50, max}), if measured
   */
  constructor(element, delay) {
    this.element = element;
    this.delay = delay;
    this.timer = null;
    this.pc = null;
    this.previous = null;
    this.at = 0;
  }

  get visible() {
    return !this.element.hidden;
  }

  /**
   * Show or hide; while shown, refresh every second from the current connection.
   * @param {() => RTCPeerConnection|null} peer gives the current connection (it changes on reconnect)
   */
  toggle(peer) {
    this.element.hidden = this.visible;
    clearInterval(this.timer);
    this.pc = null; // rates start afresh, not averaged over the time the overlay was hidden
    if (!this.visible) return;
    this.element.textContent = "waiting for video…";
    this.timer = setInterval(() => this.refresh(peer()), INTERVAL_MS);
  }

  async refresh(pc) {
    if (!pc) return;
    if (pc !== this.pc) {
      // a new connection counts from zero: no rate against the old one's counters
      this.pc = pc;
      this.previous = null;
    }
    const now = performance.now();
    const numbers = summarize(await pc.getStats(), this.previous, (now - this.at) / 1000);
    if (!numbers || pc !== this.pc) return;
    this.previous = numbers.video;
    this.at = now;
    const rtt = numbers.rttMs === null ? "–" : `${numbers.rttMs.toFixed(1)} ms`;
    const delay = this.delay();
    const glass = delay ? `${delay.p50.toFixed(0)} ms (max ${delay.max.toFixed(0)})` : "–";
    this.element.textContent = [
      `${numbers.width ?? "?"}×${numbers.height ?? "?"}  ${numbers.fps.toFixed(1)} fps`,
      `${numbers.kbps.toFixed(0)} kbit/s  rtt ${rtt}`,
      `glass to glass ${glass}`,
      `decoded ${numbers.decoded}  dropped ${numbers.dropped}  lost ${numbers.lost}`,
    ].join("\n");
  }
}
