/**
 * The WebSocket transport (`GET /ws/{session}`, subprotocol vgpustream.v1): the session's H.264 access
 * units decoded with WebCodecs, for browsers WebRTC cannot reach (no UDP out, or no H.264 in their WebRTC).
 *
 * The decoded frames are drawn on a canvas whose captured stream the console's <video> shows, so that the
 * rest of the console (input mapping, scaling, the frame callbacks) sees the picture as it sees WebRTC's.
 * Text messages are the input channel's, both ways: `channel` stands in for the WebRTC data channel.
 * Sound, where the session has it, plays in an audio track of the same stream (web/wssound.js).
 */

import { WebSocketSound } from "./wssound.js";

const PROTOCOL = "vgpustream.v1";
const VIDEO = 1;
const SOUND = 2;
const KEYFRAME = 1;
const HEADER_BYTES = 18; // u8 kind, u8 flags, f64 capture time (ms), i64 timestamp (µs)
const MAX_PENDING = 64; // capture times of frames in the decoder, kept until each is drawn

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
   */
  constructor(sessionId, token, handlers) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = `${scheme}//${location.host}/ws/${encodeURIComponent(sessionId)}`;
    this.token = token;
    this.handlers = handlers;
    this.socket = null;
    this.decoder = null;
    this.canvas = document.createElement("canvas");
    this.context = this.canvas.getContext("2d");
    /** What the console's <video> shows: the canvas the frames are drawn on. */
    this.stream = this.canvas.captureStream(0);
    this.track = this.stream.getVideoTracks()[0];
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
      width: this.canvas.width,
      height: this.canvas.height,
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
    this.pending.set(timestamp, view.getFloat64(2));
    if (this.pending.size > MAX_PENDING) this.pending.delete(this.pending.keys().next().value);
    this.decoder.decode(new EncodedVideoChunk({ type: key ? "key" : "delta", timestamp, data }));
  }

  draw(frame) {
    if (this.canvas.width !== frame.displayWidth || this.canvas.height !== frame.displayHeight) {
      this.canvas.width = frame.displayWidth;
      this.canvas.height = frame.displayHeight;
    }
    this.context.drawImage(frame, 0, 0);
    this.shownCaptured = this.pending.get(frame.timestamp) ?? NaN;
    this.pending.delete(frame.timestamp);
    this.counts.decoded++;
    frame.close();
    this.track.requestFrame?.();
  }

  /** Leave: close the socket (the server gives the seat back at once). */
  close() {
    this.socket?.close(1000, "the viewer left");
    this.track.stop();
    this.sound?.close();
  }
}
