/**
 * The WebSocket transport (`GET /ws/{session}`, subprotocol vgpustream.v1): the session's H.264 access
 * units decoded with WebCodecs, for browsers WebRTC cannot reach (no UDP out, or no H.264 in their WebRTC).
 *
 * The decoded frames are drawn on a canvas whose captured stream the console's <video> shows, so that the
 * rest of the console (input mapping, scaling, the frame callbacks) sees the picture as it sees WebRTC's.
 * Text messages are the input channel's, both ways: `channel` stands in for the WebRTC data channel.
 */

const PROTOCOL = "vgpustream.v1";
const VIDEO = 1;
const KEYFRAME = 1;
const HEADER_BYTES = 18; // u8 kind, u8 flags, f64 capture time (ms), i64 timestamp (µs)

/** Whether this browser can play the WebSocket transport (WebCodecs' VideoDecoder). */
export function canDecode() {
  return typeof VideoDecoder === "function";
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
        if (!welcomed) reject(new Error(event.reason || `the WebSocket closed (${event.code})`));
        else this.handlers.onClose(event.code, event.reason);
        this.decoder?.state !== "closed" && this.decoder?.close();
      };
    });
  }

  start(welcome) {
    this.decoder = new VideoDecoder({
      output: (frame) => this.draw(frame),
      error: () => this.close(),
    });
    this.decoder.configure({ codec: welcome.video.codec, optimizeForLatency: true });
  }

  /** A binary message: a video access unit to decode (sound is not played over this transport yet). */
  take(buffer) {
    const view = new DataView(buffer);
    if (view.getUint8(0) !== VIDEO || this.decoder?.state !== "configured") return;
    const key = (view.getUint8(1) & KEYFRAME) !== 0;
    if (!key && !this.keyed) return; // a decoder starts at a keyframe
    this.keyed = true;
    const timestamp = Number(view.getBigInt64(10));
    const data = new Uint8Array(buffer, HEADER_BYTES);
    this.decoder.decode(new EncodedVideoChunk({ type: key ? "key" : "delta", timestamp, data }));
  }

  draw(frame) {
    if (this.canvas.width !== frame.displayWidth || this.canvas.height !== frame.displayHeight) {
      this.canvas.width = frame.displayWidth;
      this.canvas.height = frame.displayHeight;
    }
    this.context.drawImage(frame, 0, 0);
    frame.close();
    this.track.requestFrame?.();
  }

  /** Leave: close the socket (the server gives the seat back at once). */
  close() {
    this.socket?.close(1000, "the viewer left");
    this.track.stop();
  }
}
