/**
 * The WebSocket transport (`GET /ws/{session}`, subprotocol vgpustream.v1): the session's H.264 access
 * units decoded with WebCodecs, for browsers WebRTC cannot reach (no UDP out, or no H.264 in their WebRTC).
 *
 * The decoded frames go into a video track that the console's <video> shows, so that the rest of the
 * console (input mapping, scaling, the frame callbacks) sees the picture as it sees WebRTC's: written
 * straight into a MediaStreamTrackGenerator where the browser has one (Chromium), else drawn on a canvas
 * whose captured stream is the track (Firefox), a copy of every frame more.
 * Text messages are the input channel's, both ways: `channel` stands in for the WebRTC data channel.
 * Sound, where the session has it, plays in an audio track of the same stream (web/wssound.js).
 */

import { WebSocketSound } from "./wssound.js";

/** A video track fed VideoFrames as they are decoded: the frames themselves, no copy (Chromium). */
class GeneratorTrack {
  constructor() {
    const generator = new MediaStreamTrackGenerator({ kind: "video" });
    this.track = generator;
    this.writer = generator.writable.getWriter();
    this.width = this.height = 0;
  }

  /** Show `frame` (the track owns it from now on). */
  show(frame) {
    this.width = frame.displayWidth;
    this.height = frame.displayHeight;
    this.writer.write(frame).catch(() => frame.close()); // a track stopped meanwhile
  }
}

/** A video track of a canvas the frames are drawn on (where there is no MediaStreamTrackGenerator). */
class CanvasTrack {
  constructor() {
    this.canvas = document.createElement("canvas");
    this.context = this.canvas.getContext("2d");
    this.track = this.canvas.captureStream(0).getVideoTracks()[0];
  }

  get width() {
    return this.canvas.width;
  }

  get height() {
    return this.canvas.height;
  }

  /** Show `frame`, then close it. */
  show(frame) {
    if (this.canvas.width !== frame.displayWidth || this.canvas.height !== frame.displayHeight) {
      this.canvas.width = frame.displayWidth;
      this.canvas.height = frame.displayHeight;
    }
    this.context.drawImage(frame, 0, 0);
    frame.close();
    this.track.requestFrame?.();
  }
}

const PROTOCOL = "vgpustream.v1";
const VIDEO = 1;
const SOUND = 2;
const KEYFRAME = 1;
const HEADER_BYTES = 18; // u8 kind, u8 flags, f64 capture time (ms), i64 timestamp (µs)
const MAX_PENDING = 64; // capture times of frames in the decoder, kept until each is drawn
/**
 * A decoded frame captured this much (ms) before the newest one received is not shown, only decoded (the
 * frames after it need it): a decoder that fell behind (its start at a join, a busy machine) catches up
 * without playing the past back. The newest frame is always shown.
 */
const STALE_MS = 100;

/** Whether this browser can play the WebSocket transport (WebCodecs' VideoDecoder). */
export function canDecode() {
  return typeof VideoDecoder === "function";
}

/** The socket closed before the server welcomed this viewer: `code` and `reason` say why (4401: no token…). */
export class WebSocketClosed extends Error {
  constructor(code, reason) {
    super(reason || `the WebSocket closed (${code})`);
    this.name = "WebSocketClosed";
    this.code = code;
    this.reason = reason;
  }
}

/** One viewer over a WebSocket: connect() resolves once the server welcomed it, close() ends it. */
export class WebSocketClient {
  /**
   * @param {string} sessionId
   * @param {string|null} token sent in the first message, never in the URL
   * @param {{onText: (data: string) => void, onClose: (code: number, reason: string) => void}} handlers
   * @param {string} route the query: the session's node to a gateway, the quality asked for ("" without either)
   */
  constructor(sessionId, token, handlers, route = "") {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = `${scheme}//${location.host}/ws/${encodeURIComponent(sessionId)}${route}`;
    this.token = token;
    this.handlers = handlers;
    this.socket = null;
    this.decoder = null;
    this.video = typeof MediaStreamTrackGenerator === "function" ? new GeneratorTrack() : new CanvasTrack();
    /** What the console's <video> shows. */
    this.stream = new MediaStream([this.video.track]);
    /** Stands in for the WebRTC data channel: the console sends its input messages here. */
    this.channel = {
      get readyState() {
        return this.socket?.readyState === WebSocket.OPEN ? "open" : "closed";
      },
      socket: null,
      send: (text) => this.socket?.send(text),
    };
    this.keyed = false;
    this.sound = null;
    /** The capture time (ms since the Unix epoch) of each frame in the decoder, by its timestamp. */
    this.pending = new Map();
    /** The capture time of the frame drawn last (NaN where the server did not know it). */
    this.shownCaptured = NaN;
    this.counts = { decoded: 0, bytes: 0, skipped: 0 };
    /** The capture time of the newest video packet received (NaN before the first, or unknown). */
    this.newestCaptured = NaN;
  }

  /** The capture time of the frame the <video> shows: the last one drawn (for the delay meter). */
  capturedOf() {
    return Number.isNaN(this.shownCaptured) ? null : this.shownCaptured;
  }

  /** What the stats overlay shows (web/stats.js): counters since the socket opened. */
  counters() {
    return {
      decoded: this.counts.decoded,
      bytes: this.counts.bytes,
      width: this.video.width,
      height: this.video.height,
      dropped: this.counts.skipped,
      lost: 0,
      rttMs: null,
    };
  }

  /** Open the socket, authenticate and wait for the server's welcome; rejects if it closes first. */
  connect() {
    return new Promise((resolve, reject) => {
      const socket = (this.socket = this.channel.socket = new WebSocket(this.url, PROTOCOL));
      socket.binaryType = "arraybuffer";
      let welcomed = false;
      socket.onopen = () => socket.send(JSON.stringify({ type: "auth", token: this.token }));
      socket.onmessage = (event) => {
        if (typeof event.data !== "string") {
          this.take(event.data);
          return;
        }
        if (!welcomed) {
          welcomed = true;
          this.start(JSON.parse(event.data));
          resolve();
          return;
        }
        this.handlers.onText(event.data);
      };
      socket.onclose = (event) => {
        if (!welcomed) reject(new WebSocketClosed(event.code, event.reason));
        else this.handlers.onClose(event.code, event.reason);
        this.decoder?.state !== "closed" && this.decoder?.close();
        this.sound?.close();
      };
    });
  }

  start(welcome) {
    this.decoder = new VideoDecoder({
      output: (frame) => this.draw(frame),
      error: () => this.close(),
    });
    this.decoder.configure({ codec: welcome.video.codec, optimizeForLatency: true });
    if (welcome.sound && typeof AudioDecoder === "function") {
      this.sound = new WebSocketSound(welcome.sound);
      this.stream.addTrack(this.sound.track);
    }
  }

  /** A binary message: a video access unit to decode, or a sound packet to play. */
  take(buffer) {
    this.counts.bytes += buffer.byteLength;
    const view = new DataView(buffer);
    const timestamp = Number(view.getBigInt64(10));
    const data = new Uint8Array(buffer, HEADER_BYTES);
    if (view.getUint8(0) === SOUND) this.sound?.take(data, timestamp);
    if (view.getUint8(0) !== VIDEO || this.decoder?.state !== "configured") return;
    const key = (view.getUint8(1) & KEYFRAME) !== 0;
    if (!key && !this.keyed) {
      this.counts.skipped++; // a decoder starts at a keyframe
      return;
    }
    this.keyed = true;
    this.newestCaptured = view.getFloat64(2);
    this.pending.set(timestamp, this.newestCaptured);
    if (this.pending.size > MAX_PENDING) this.pending.delete(this.pending.keys().next().value);
    this.decoder.decode(new EncodedVideoChunk({ type: key ? "key" : "delta", timestamp, data }));
  }

  draw(frame) {
    const captured = this.pending.get(frame.timestamp) ?? NaN;
    this.pending.delete(frame.timestamp);
    this.counts.decoded++;
    if (this.newestCaptured - captured > STALE_MS) {
      this.counts.skipped++; // behind: newer frames are on their way to the screen
      frame.close();
      return;
    }
    this.shownCaptured = captured;
    this.video.show(frame);
  }

  /** Leave: close the socket (the server gives the seat back at once). */
  close() {
    this.socket?.close(1000, "the viewer left");
    this.video.track.stop();
    this.sound?.close();
  }
}
