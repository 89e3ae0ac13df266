/**
 * The AudioWorklet that plays the WebSocket transport's sound (web/wssound.js): decoded blocks of samples
 * come in on the port, and are played out in order from a short buffer. It starts once PREFILL_S of
 * sound is buffered (the packets come over TCP, unevenly), plays silence and refills after running dry,
 * and drops the oldest blocks when more than MAX_S is buffered, so the sound never lags the picture by
 * more than that.
 */

const PREFILL_S = 0.06;
const MAX_S = 0.25;

class SoundPlayer extends AudioWorkletProcessor {
  constructor() {
    super();
    /** Blocks of planar samples ([left, right] Float32Arrays), oldest first. */
    this.blocks = [];
    this.offset = 0; // into the first block
    this.buffered = 0; // samples per channel, from `offset` on
    this.playing = false;
    this.port.onmessage = (event) => this.add(event.data);
  }

  add(planes) {
    this.blocks.push(planes);
    this.buffered += planes[0].length;
    while (this.buffered - this.blocks[0][0].length + this.offset > MAX_S * sampleRate) {
      this.buffered -= this.blocks.shift()[0].length - this.offset;
      this.offset = 0;
    }
  }

  process(inputs, outputs) {
    const output = outputs[0];
    const wanted = output[0].length;
    if (!this.playing && this.buffered < PREFILL_S * sampleRate) return true;
    this.playing = true;
    let written = 0;
    while (written < wanted && this.blocks.length) {
      const block = this.blocks[0];
      const count = Math.min(wanted - written, block[0].length - this.offset);
      output.forEach((channel, index) => {
        const plane = block[Math.min(index, block.length - 1)]; // a mono block plays on both channels
        channel.set(plane.subarray(this.offset, this.offset + count), written);
      });
      written += count;
      this.offset += count;
      this.buffered -= count;
      if (this.offset === block[0].length) {
        this.blocks.shift();
        this.offset = 0;
      }
    }
    if (written < wanted) this.playing = false; // ran dry: the rest is silence until it has refilled
    return true;
  }
}

registerProcessor("vgpustream-sound", SoundPlayer);
