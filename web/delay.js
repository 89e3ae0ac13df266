/**
 * Glass-to-glass delay: for each frame shown, from its capture to the time the browser expects it on
 * screen (requestVideoFrameCallback's expectedDisplayTime). The capture time comes with each frame: over
 * WebRTC as the abs-capture-time RTP header extension (`rtpCaptureTime`), over the WebSocket in each
 * message's header (web/wsclient.js). Both are wall-clock times: the figure is right where the server's
 * and the browser's clocks agree (the same host, or both kept by NTP).
 */

const NTP_UNIX_OFFSET_MS = 2208988800000; // captureTimestamp counts from 1900, the page's clock from 1970
const VIDEO_CLOCK_KHZ = 90; // RTP ticks per millisecond of video
const REPORT_INTERVAL_MS = 1000;
const MAX_SAMPLES = 64; // per report: the server takes at most 64
const MAX_DELAY_MS = 60000;
/** Why there is no figure in a browser without requestVideoFrameCallback. */
const NO_FRAME_CALLBACK = "this browser does not tell when it shows a frame";
/** Why there is no figure over WebRTC without abs-capture-time (Firefox cannot negotiate it). */
export const NO_CAPTURE_TIME = "this browser's WebRTC does not take the frames' capture times";

/** The value below which `fraction` of the sorted `values` lie. */
function quantile(sorted, fraction) {
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))];
}

/**
 * The capture time (ms since the Unix epoch) of the frame a WebRTC receiver's video shows, from the
 * abs-capture-time of its last packet and the RTP clock; null without one (a frame replayed at join).
 * @param {RTCRtpReceiver} receiver
 * @returns {(metadata: VideoFrameCallbackMetadata) => number|null}
 */
export function rtpCaptureTime(receiver) {
  return (metadata) => {
    if (metadata.rtpTimestamp === undefined) return null;
    const source = receiver.getSynchronizationSources().find((s) => s.captureTimestamp !== undefined);
    if (!source) return null;
    const ticks = (metadata.rtpTimestamp - source.rtpTimestamp) | 0; // signed 32-bit: the clock wraps
    return source.captureTimestamp - NTP_UNIX_OFFSET_MS + ticks / VIDEO_CLOCK_KHZ;
  };
}

/** Measures the delay of each frame a video element shows, and reports it every second. */
export class DelayMeter {
  /**
   * @param {HTMLVideoElement} video
   * @param {(message: object) => void} send sends a message on the input channel
   */
  constructor(video, send) {
    this.video = video;
    this.send = send;
    this.capturedOf = null;
    this.samples = [];
    /** The last second's figures ({p50, max, frames}), or null without any. */
    this.summary = null;
    this.supported = "requestVideoFrameCallback" in HTMLVideoElement.prototype;
    /** Why the delay cannot be measured on the current connection, or null where it can. */
    this.unavailable = this.supported ? null : NO_FRAME_CALLBACK;
    if (!this.supported) return;
    const onFrame = (now, metadata) => {
      this.measure(metadata);
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
    setInterval(() => this.report(), REPORT_INTERVAL_MS);
  }

  /**
   * Measure the current connection's frames.
   * @param {((metadata: VideoFrameCallbackMetadata) => number|null)|null} capturedOf the capture time of
   *   the frame shown (ms since the Unix epoch), null where it is not known; null while not connected
   * @param {string|null} missing why no frame's capture time will be known on this connection, if so
   */
  watch(capturedOf, missing = null) {
    this.capturedOf = capturedOf;
    this.samples = [];
    this.summary = null;
    this.unavailable = this.supported ? missing : NO_FRAME_CALLBACK;
  }

  measure(metadata) {
    const captured = this.capturedOf?.(metadata);
    if (captured === null || captured === undefined) return;
    const delay = performance.timeOrigin + metadata.expectedDisplayTime - captured;
    if (delay >= 0 && delay <= MAX_DELAY_MS) this.samples.push(delay);
  }

  report() {
    const samples = this.samples.splice(0);
    if (!samples.length) {
      this.summary = null;
      return;
    }
    const sorted = [...samples].sort((a, b) => a - b);
    this.summary = { p50: quantile(sorted, 0.5), max: sorted[sorted.length - 1], frames: samples.length };
    this.send({ type: "delay", ms: samples.slice(-MAX_SAMPLES).map((ms) => Math.round(ms * 10) / 10) });
  }
}
