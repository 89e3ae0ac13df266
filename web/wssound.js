/**
 * The WebSocket transport's sound: the session's Opus packets decoded by WebCodecs' AudioDecoder and
 * played by an AudioWorklet (web/soundplayer.worklet.js) into an audio track. The console adds that track
 * to the stream its <video> plays, so the speaker button mutes, unmutes and sets its volume as it does
 * WebRTC's audio track.
 */

const WORKLET = "/web/soundplayer.worklet.js";

export class WebSocketSound {
  /**
   * @param {{codec: string, sampleRate: number, numberOfChannels: number}} format the welcome's `sound`
   */
  constructor(format) {
    this.format = format;
    // the packets' own rate: no resampling between the decoder and the worklet
    this.context = new AudioContext({ sampleRate: format.sampleRate, latencyHint: "interactive" });
    this.destination = this.context.createMediaStreamDestination();
    /** The audio track the console plays beside the picture. */
    this.track = this.destination.stream.getAudioTracks()[0];
    this.player = null;
    this.decoder = new AudioDecoder({ output: (data) => this.play(data), error: () => this.close() });
    this.decoder.configure(format);
    /** Resolves once the worklet runs; packets that come before are dropped (the first 10–20 ms). */
    this.ready = this.context.audioWorklet.addModule(WORKLET).then(() => {
      const options = { numberOfInputs: 0, outputChannelCount: [format.numberOfChannels] };
      this.player = new AudioWorkletNode(this.context, "vgpustream-sound", options);
      this.player.connect(this.destination);
    });
  }

  /** One Opus packet (the binary message's payload) at `timestamp` µs. */
  take(data, timestamp) {
    if (!this.player || this.decoder.state !== "configured") return;
    this.decoder.decode(new EncodedAudioChunk({ type: "key", timestamp, data }));
  }

  play(data) {
    const planes = [];
    for (let plane = 0; plane < data.numberOfChannels; plane++) {
      const samples = new Float32Array(data.numberOfFrames);
      data.copyTo(samples, { planeIndex: plane, format: "f32-planar" });
      planes.push(samples);
    }
    data.close();
    this.player.port.postMessage(planes, planes.map((samples) => samples.buffer));
  }

  /** Let it play: browsers start an AudioContext suspended until the user asks for sound. */
  resume() {
    return this.context.resume();
  }

  close() {
    if (this.decoder.state !== "closed") this.decoder.close();
    this.track.stop();
    this.context.close().catch(() => {});
  }
}
