/**
 * The console's microphone: the person's voice into the VM's sound input. The button shows only where the
 * VM takes sound in and this link may send it (the server's state message says `microphone: true`). A click
 * asks the browser for the microphone, then the server for the VM's (one viewer's at a time); it is live,
 * and the button says so, only once the server agreed, and every refusal is shown with the server's reason.
 *
 * Over WebRTC the track goes on the audio transceiver the console offered sendrecv (the server decodes the
 * Opus); over the WebSocket, WebCodecs' AudioEncoder makes Opus packets that go as binary messages (kind 3,
 * the server's header; see web/wsclient.js).
 */

const MICROPHONE = 3;
const HEADER_BYTES = 18; // u8 kind, u8 flags, f64 capture time (ms), i64 timestamp (µs)
/** What the console tells the server it sends: Opus, which decodes at 48 kHz whatever the input's rate. */
const FORMAT = { codec: "opus", sampleRate: 48000, numberOfChannels: 1 };
const NOTE_MS = 6000;

/** A microphone message for the WebSocket transport: the header, then one Opus packet. */
function packetMessage(chunk) {
  const message = new ArrayBuffer(HEADER_BYTES + chunk.byteLength);
  const view = new DataView(message);
  view.setUint8(0, MICROPHONE);
  view.setFloat64(2, performance.timeOrigin + performance.now());
  view.setBigInt64(10, BigInt(Math.round(chunk.timestamp)));
  chunk.copyTo(new Uint8Array(message, HEADER_BYTES));
  return message;
}

/**
 * Opus packets of a microphone track (Chromium: MediaStreamTrackProcessor into an AudioEncoder), each given
 * to `send` as a WebSocket binary message.
 */
class OpusSender {
  constructor(track, send) {
    this.encoder = new AudioEncoder({
      output: (chunk) => send(packetMessage(chunk)),
      error: () => this.close(),
    });
    this.reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
    this.pump();
  }

  async pump() {
    for (;;) {
      const { value: data, done } = await this.reader.read().catch(() => ({ done: true }));
      if (done) return;
      if (this.encoder.state === "unconfigured") {
        const { sampleRate, numberOfChannels } = data;
        this.encoder.configure({ codec: "opus", sampleRate, numberOfChannels, bitrate: 48000 });
      }
      if (this.encoder.state === "configured") this.encoder.encode(data);
      data.close();
    }
  }

  close() {
    this.reader.cancel().catch(() => {});
    if (this.encoder.state !== "closed") this.encoder.close();
  }
}

export class Microphone {
  /**
   * @param {HTMLButtonElement} button the Microphone button
   * @param {HTMLElement} note where a refusal is shown
   * @param {(message: object) => void} sendMessage the input channel
   */
  constructor(button, note, sendMessage) {
    this.button = button;
    this.note = note;
    this.sendMessage = sendMessage;
    this.transport = null; // {sender} over WebRTC, {socket} over the WebSocket
    this.track = null;
    this.opus = null;
    this.live = false;
    button.addEventListener("click", () => (this.track ? this.stop(true) : this.start()));
    this.reset();
  }

  /** The connection's way to send the track: an RTCRtpSender (WebRTC) or a WebSocket client's socket. */
  use(transport) {
    this.transport = transport;
  }

  /** Whether the VM takes sound in and this link may send it (the server's state message). */
  setAvailable(available) {
    this.button.hidden = !available;
    if (!available && this.track) this.stop(true); // the server is told too: the VM's input may come back
  }

  /** The connection went: nothing is sent any more. */
  reset() {
    this.stop(false);
    this.transport = null;
    this.button.hidden = true;
  }

  async start() {
    try {
      this.track = (
        await navigator.mediaDevices.getUserMedia({
          // the VM's own software does what a microphone needs; the console only carries the sound
          audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
        })
      ).getAudioTracks()[0];
    } catch (error) {
      this.tell(`The browser gave no microphone: ${error.message}`);
      return;
    }
    this.show();
    this.sendMessage({ type: "microphone", on: true, ...FORMAT });
  }

  /** Stop sending; `tell` the server too (not where the connection is gone). */
  stop(tell) {
    this.track?.stop();
    this.track = null;
    this.opus?.close();
    this.opus = null;
    this.transport?.sender?.replaceTrack(null).catch(() => {});
    if (tell) this.sendMessage({ type: "microphone", on: false });
    this.live = false;
    this.show();
  }

  /** The server's answer: `{"type": "microphone", "live", "message"}`. */
  outcome({ live, message }) {
    if (message) this.tell(message);
    if (!live) {
      if (this.track) this.stop(false);
      return;
    }
    if (!this.track || this.live) return;
    this.live = true;
    if (this.transport?.sender) this.transport.sender.replaceTrack(this.track).catch((e) => this.tell(e.message));
    else if (this.transport?.socket && typeof AudioEncoder === "function" && self.MediaStreamTrackProcessor) {
      const socket = this.transport.socket;
      this.opus = new OpusSender(this.track, (data) => socket.readyState === WebSocket.OPEN && socket.send(data));
    } else {
      this.tell("this browser cannot encode sound for the WebSocket (it has no MediaStreamTrackProcessor)");
      this.stop(true);
      return;
    }
    this.show();
  }

  show() {
    const state = this.live ? "on" : this.track ? "asking" : "off";
    this.button.setAttribute("aria-pressed", String(this.live));
    this.button.classList.toggle("on", this.live);
    this.button.dataset.state = state;
    this.button.querySelector(".label").textContent = { on: "Mic on", asking: "Mic…", off: "Mic off" }[state];
    this.button.title = this.live ? "Your microphone goes into the VM (click to stop)" : "Send your microphone to the VM";
  }

  tell(message) {
    this.note.textContent = `Microphone: ${message}`;
    this.note.hidden = false;
    clearTimeout(this.noteTimer);
    this.noteTimer = setTimeout(() => (this.note.hidden = true), NOTE_MS);
  }
}
