/**
 * The console's speaker. The VM's sound arrives as an audio track in the same stream as the picture,
 * and plays in the same <video> element, so the browser keeps sound and picture in sync. Browsers play
 * sound only once the user asked for it: the console starts muted, and the speaker button (shown only
 * when the session sends sound) unmutes it; the slider sets the volume.
 */

export class Speaker {
  /**
   * @param {HTMLVideoElement} video the console's <video>, which plays the session's stream
   * @param {HTMLButtonElement} button the speaker (mute/unmute) button
   * @param {HTMLInputElement} volume a range input, 0..1
   */
  constructor(video, button, volume) {
    this.video = video;
    this.button = button;
    this.volume = volume;
    video.muted = true;
    video.volume = Number(volume.value);
    button.addEventListener("click", () => this.toggle());
    volume.addEventListener("input", () => {
      video.volume = Number(volume.value);
    });
    this.reset();
  }

  /**
   * The connection brought an audio track: add it to the playing stream, offer the speaker button.
   * @param {MediaStreamTrack} track
   * @param {{resume: () => Promise<void>}|null} player what plays the track where the page itself does
   *   (the WebSocket transport's AudioContext): it too waits for the user's click
   */
  attach(track, player = null) {
    this.player = player;
    const stream = this.video.srcObject;
    if (stream instanceof MediaStream && !stream.getTrackById(track.id)) stream.addTrack(track);
    this.button.hidden = this.volume.hidden = false;
  }

  /** No sound (yet) on the current connection. */
  reset() {
    this.player = null;
    this.button.hidden = this.volume.hidden = true;
  }

  /** Mute or unmute (a click: the user gesture browsers want before they play sound). */
  toggle() {
    this.video.muted = !this.video.muted;
    if (!this.video.muted) {
      this.video.play().catch(() => {});
      this.player?.resume().catch(() => {});
    }
    this.button.setAttribute("aria-pressed", String(!this.video.muted));
    this.button.querySelector(".label").textContent = this.video.muted ? "Sound off" : "Sound on";
    this.button.classList.toggle("on", !this.video.muted);
  }
}
