/**
 * Keyboard, pointer and wheel capture on the console's stage, sent as the input protocol:
 * {"type":"key","code","down"}, {"type":"pointer","x","y","buttons"} (x, y in 0..1 of the
 * picture), {"type":"wheel","dx","dy"}.
 */

const LINE_PIXELS = 16;

/** Where the picture is drawn inside a <video> with object-fit: contain. */
export function contentRect(video) {
  const box = video.getBoundingClientRect();
  if (!video.videoWidth || !video.videoHeight) return box;
  const scale = Math.min(box.width / video.videoWidth, box.height / video.videoHeight);
  const width = video.videoWidth * scale;
  const height = video.videoHeight * scale;
  return { left: box.left + (box.width - width) / 2, top: box.top + (box.height - height) / 2, width, height };
}

const clamp = (value) => Math.min(1, Math.max(0, value));

export class InputCapture {
  /**
   * @param {HTMLElement} stage focusable element around the video; keys are captured while it has focus
   * @param {HTMLVideoElement} video
   * @param {(event: object) => void} send
   */
  constructor(stage, video, send) {
    this.stage = stage;
    this.video = video;
    this.send = send;
    this.held = new Set();
    this.pendingPointer = null;
    this.listeners = [
      [stage, "pointermove", (e) => this.pointer(e, false)],
      [stage, "pointerdown", (e) => { stage.focus(); this.pointer(e, true); }],
      [stage, "pointerup", (e) => this.pointer(e, true)],
      [stage, "wheel", (e) => this.wheel(e), { passive: false }],
      [stage, "contextmenu", (e) => e.preventDefault()],
      [stage, "keydown", (e) => this.key(e, true)],
      [stage, "keyup", (e) => this.key(e, false)],
      [stage, "blur", () => this.releaseAll()],
      [document, "visibilitychange", () => document.hidden && this.releaseAll()],
    ];
    for (const [target, type, handler, options] of this.listeners) target.addEventListener(type, handler, options);
  }

  /** Stop capturing, releasing every key still held. */
  detach() {
    this.releaseAll();
    for (const [target, type, handler, options] of this.listeners) target.removeEventListener(type, handler, options);
  }

  pointer(event, now) {
    const rect = contentRect(this.video);
    this.pendingPointer = {
      type: "pointer",
      x: clamp((event.clientX - rect.left) / rect.width),
      y: clamp((event.clientY - rect.top) / rect.height),
      buttons: event.buttons,
    };
    if (now) {
      this.flushPointer();
    } else if (!this.frameRequested) {
      // at most one move per animation frame
      this.frameRequested = true;
      requestAnimationFrame(() => this.flushPointer());
    }
  }

  flushPointer() {
    this.frameRequested = false;
    if (this.pendingPointer) this.send(this.pendingPointer);
    this.pendingPointer = null;
  }

  wheel(event) {
    event.preventDefault();
    const unit = event.deltaMode === 1 ? LINE_PIXELS : event.deltaMode === 2 ? this.stage.clientHeight : 1;
    const dx = Math.round(event.deltaX * unit);
    const dy = Math.round(event.deltaY * unit);
    if (dx || dy) this.send({ type: "wheel", dx, dy });
  }

  key(event, down) {
    if (!event.code) return;
    event.preventDefault();
    if (down) this.held.add(event.code);
    else this.held.delete(event.code);
    this.send({ type: "key", code: event.code, down });
  }

  /** Press and release a combination, e.g. ["ControlLeft", "AltLeft", "Delete"]. */
  combo(codes) {
    for (const code of codes) this.send({ type: "key", code, down: true });
    for (const code of [...codes].reverse()) this.send({ type: "key", code, down: false });
  }

  releaseAll() {
    for (const code of this.held) this.send({ type: "key", code, down: false });
    this.held.clear();
  }
}
