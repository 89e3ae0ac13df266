/**
 * The stats overlay: frame rate, bitrate and round-trip time from RTCPeerConnection.getStats() (over the
 * WebSocket, from the client's own counters), and the glass-to-glass delay of the last second (delay.js), or
 * why it is not available.
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
 * A WebRTC connection's counters for the overlay, from its getStats() report; null while it receives
 * no video yet.
 * @param {RTCPeerConnection} pc
 */
export async function webrtcCounters(pc) {
  const report = await pc.getStats();
  const video = [...report.values()].find((entry) => entry.type === "inbound-rtp" && entry.kind === "video");
  if (!video) return null;
  const rtt = selectedPair(report)?.currentRoundTripTime;
  return {
    decoded: video.framesDecoded ?? 0,
    bytes: video.bytesReceived ?? 0,
    width: video.frameWidth,
    height: video.frameHeight,
    dropped: video.framesDropped ?? 0,
    lost: video.packetsLost ?? 0,
    rttMs: rtt === undefined ? null : rtt * 1000,
  };
}

/**
 * The numbers the overlay shows, from a connection's counters and those taken `seconds` earlier (rates
 * are 0 without them).
 * @param {object} counters decoded, bytes, width, height, dropped, lost, rttMs
 * @param {object|null} previous the earlier counters, from the same connection
 * @param {number} seconds
 */
export function summarize(counters, previous, seconds) {
  const rate = (key, scale = 1) =>
    previous && seconds > 0 ? ((counters[key] - previous[key]) * scale) / seconds : 0;
  return { ...counters, fps: rate("decoded"), kbps: rate("bytes", 8 / 1000) };
}

/** The overlay element, refreshed every second while shown. */
export class StatsOverlay {
  /**
   * @param {HTMLElement} element where the numbers are shown
   * @param {{summary: object|null, unavailable: string|null}} delay the glass-to-glass meter (delay.js): the
   *   last second's delay ({p50, max}) if measured, and why it cannot be where it cannot
   */
  constructor(element, delay) {
    this.element = element;
    this.delay = delay;
    this.timer = null;
    this.key = null;
    this.previous = null;
    this.at = 0;
  }

  get visible() {
    return !this.element.hidden;
  }

  /**
   * Show or hide; while shown, refresh every second from the current connection.
   * @param {() => {key: object, counters: () => Promise<object|null>}|null} connection gives the current
   *   connection (it changes on reconnect) and how to read its counters
   */
  toggle(connection) {
    this.element.hidden = this.visible;
    clearInterval(this.timer);
    this.key = null; // rates start afresh, not averaged over the time the overlay was hidden
    if (!this.visible) return;
    this.element.textContent = "waiting for video…";
    this.timer = setInterval(() => this.refresh(connection()), INTERVAL_MS);
  }

  async refresh(connection) {
    if (!connection) return;
    const { key } = connection;
    if (key !== this.key) {
      // a new connection counts from zero: no rate against the old one's counters
      this.key = key;
      this.previous = null;
    }
    const now = performance.now();
    const counters = await connection.counters();
    if (!counters || key !== this.key) return;
    const numbers = summarize(counters, this.previous, (now - this.at) / 1000);
    this.previous = counters;
    this.at = now;
    const rtt = numbers.rttMs === null ? "–" : `${numbers.rttMs.toFixed(1)} ms`;
    const { summary, unavailable } = this.delay;
    let glass = "–";
    if (summary) glass = `${summary.p50.toFixed(0)} ms (max ${summary.max.toFixed(0)})`;
    else if (unavailable) glass = `not available: ${unavailable}`;
    this.element.textContent = [
      `${numbers.width ?? "?"}×${numbers.height ?? "?"}  ${numbers.fps.toFixed(1)} fps`,
      `${numbers.kbps.toFixed(0)} kbit/s  rtt ${rtt}`,
      `glass to glass ${glass}`,
      `decoded ${numbers.decoded}  dropped ${numbers.dropped}  lost ${numbers.lost}`,
    ].join("\n");
  }
}
