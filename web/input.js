/**
 * Keyboard, pointer and wheel capture on the console's stage, sent as the input protocol:
 * {"type":"key","code","down"}, {"type":"pointer","x","y","buttons"} (x, y in 0..1 of the
 * picture), {"type":"wheel","dx","dy"} (whole pixels); while the pointer is locked to the stage,
 * {"type":"motion","dx","dy","buttons"} (whole guest pixels) instead of positions.
 */

const LINE_PIXELS = 16;
const MAX_MOTION = 4096;

/**
 * Where the picture is drawn inside a <video> with object-fit: contain (the box minus letterboxing).
 * @param {HTMLVideoElement} video
 * @returns {{left: number, top: number, width: number, height: number}} in client coordinates
 */
export function contentRect(video) {
  const box = video.getBoundingClientRect();
  if (!video.videoWidth || !video.videoHeight) return box;
  const scale = Math.min(box.width / video.videoWidth, box.height / video.videoHeight);
  const width = video.videoWidth * scale;
  const height = video.videoHeight * scale;
  return { left: box.left + (box.width - width) / 2, top: box.top + (box.height - height) / 2, width, height };
}

const clamp = (value) => Math.min(1, Math.max(0, value));

/** Turns DOM events on the stage into input messages; keys only while the stage has focus. */
export class InputCapture {
  /**
   * @param {HTMLElement} stage focusable element around the video; keys are captured while it has focus
   * @param {HTMLVideoElement} video the picture pointer positions are relative to
   * @param {(message: object) => void} send sends one message (or drops it while there is no channel)
   */
  constructor(stage, video, send) {
    this.stage = stage;
    this.video = video;
    this.send = send;
    /** KeyboardEvent.code of every key the VM was told is down. */
    this.held = new Set();
    this.pendingPointer = null;
    this.frameRequested = false;
    // a locked pointer's motion not yet sent, in guest pixels (fractions are kept for the next)
    this.motion = { x: 0, y: 0 };
    // a touchpad scrolls in fractions of a pixel: keep the rest for the next event
    this.wheelRest = { x: 0, y: 0 };
    // mouse and pen; touch is touch.js's (gestures)
    const on = (type, handler) => stage.addEventListener(type, (e) => e.pointerType !== "touch" && handler(e));
    on("pointermove", (e) => this.pointer(e, false));
    on("pointerdown", (e) => {
      stage.focus();
      // a drag that leaves the stage must still deliver its button release
      stage.setPointerCapture(e.pointerId);
      this.pointer(e, true);
    });
    on("pointerup", (e) => this.pointer(e, true));
    on("pointercancel", (e) => this.pointer(e, true));
    stage.addEventListener("wheel", (e) => this.wheel(e), { passive: false });
    stage.addEventListener("contextmenu", (e) => e.preventDefault());
    stage.addEventListener("keydown", (e) => this.key(e, true));
    stage.addEventListener("keyup", (e) => this.key(e, false));
    stage.addEventListener("blur", () => this.releaseAll());
    document.addEventListener("visibilitychange", () => document.hidden && this.releaseAll());
  }

  pointer(event, now) {
    const rect = contentRect(this.video);
    if (document.pointerLockElement === this.stage) {
      const scale = this.video.videoWidth ? this.video.videoWidth / rect.width : 1;
      this.motion.x += event.movementX * scale;
      this.motion.y += event.movementY * scale;
      this.pendingPointer = { type: "motion", buttons: event.buttons };
    } else {
      this.pendingPointer = {
        type: "pointer",
        x: clamp((event.clientX - rect.left) / rect.width),
        y: clamp((event.clientY - rect.top) / rect.height),
        buttons: event.buttons,
      };
    }
    if (now) {
      this.flushPointer();
    } else if (!this.frameRequested) {
      this.frameRequested = true;
      requestAnimationFrame(() => this.flushPointer());
    }
  }

  flushPointer() {
    this.frameRequested = false;
    const pending = this.pendingPointer;
    this.pendingPointer = null;
    if (pending?.type === "motion") {
      const whole = (d) => Math.max(-MAX_MOTION, Math.min(MAX_MOTION, Math.trunc(d)));
      const [dx, dy] = [whole(this.motion.x), whole(this.motion.y)];
      this.motion = { x: this.motion.x - dx, y: this.motion.y - dy };
      this.send({ ...pending, dx, dy });
    } else if (pending) this.send(pending);
  }

  wheel(event) {
    event.preventDefault();
    const unit = [1, LINE_PIXELS, this.stage.clientHeight][event.deltaMode] ?? 1;
    const x = this.wheelRest.x + event.deltaX * unit;
    const y = this.wheelRest.y + event.deltaY * unit;
    const dx = Math.trunc(x);
    const dy = Math.trunc(y);
    this.wheelRest = { x: x - dx, y: y - dy };
    if (dx || dy) this.send({ type: "wheel", dx, dy });
  }

  key(event, down) {
    // composition (IME) events carry no code; they are not ours to send
    if (!event.code) return;
    event.preventDefault();
    if (down) {
      this.held.add(event.code);
    } else if (!this.held.delete(event.code)) {
      return; // pressed before the stage had focus: the VM never saw it go down
    }
    this.send({ type: "key", code: event.code, down });
  }

  /**
   * Press and release a combination the browser would not let through, e.g. Ctrl+Alt+Delete.
   * @param {string[]} codes KeyboardEvent.code values, pressed in order and released in reverse
   */
  combo(codes) {
    for (const code of codes) this.send({ type: "key", code, down: true });
    for (const code of [...codes].reverse()) this.send({ type: "key", code, down: false });
  }

  /** Tell the VM every key still held is up (focus or the connection went away). */
  releaseAll() {
    for (const code of this.held) this.send({ type: "key", code, down: false });
    this.held.clear();
  }
}
