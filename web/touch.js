/**
 * Touch screens: gestures on the picture become the VM's pointer, and an on-screen keyboard types into it.
 * - one finger: a tap clicks where it lands; held still for LONG_PRESS_MS it right-clicks; moved, it drags
 *   with the left button down;
 * - two fingers: moved together they scroll (wheel); pinched, they zoom the picture here, not in the VM;
 * - the toolbar's Keyboard button focuses a text field inside the stage, which raises the device keyboard:
 *   what it types (beforeinput, and composition for IME text) is typed into the VM on a US layout.
 * Mouse and pen stay with input.js; hardware keys pressed in the text field reach input.js first
 * (their keydown carries a code, and input.js takes it before any text is input).
 */

import { contentRect } from "./input.js";
import { keysFor } from "./typing.js";

const LONG_PRESS_MS = 600;
const MOVE_SLOP_PX = 10;
const PINCH_SLOP = 0.1; // a change of finger distance by this fraction makes two fingers a pinch
const MAX_ZOOM = 4;

const clamp = (value, low, high) => Math.min(high, Math.max(low, value));
const distance = (a, b) => Math.hypot(a.x - b.x, a.y - b.y);
const middle = (a, b) => ({ x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 });

export class TouchInput {
  /**
   * @param {HTMLElement} stage the element the picture is in
   * @param {HTMLVideoElement} video the picture
   * @param {HTMLTextAreaElement} field the on-screen keyboard's text field (inside the stage)
   * @param {(message: object) => void} send sends one input message
   * @param {(codes: string[]) => void} press presses and releases one key combination
   */
  constructor(stage, video, field, send, press) {
    this.stage = stage;
    this.video = video;
    this.field = field;
    this.send = send;
    this.press = press;
    /** Fingers down, by pointerId: where they are now (client coordinates). */
    this.fingers = new Map();
    this.gesture = null;
    this.zoom = { scale: 1, x: 0, y: 0 };
    for (const type of ["pointerdown", "pointermove", "pointerup", "pointercancel"]) {
      stage.addEventListener(type, (event) => event.pointerType === "touch" && this[type](event));
    }
    // the browser's own touch gestures (long-press menus, text selection, double-tap zoom) stay out
    stage.addEventListener("touchstart", (event) => event.target !== field && event.preventDefault(), {
      passive: false,
    });
    field.addEventListener("beforeinput", (event) => this.beforeInput(event));
    field.addEventListener("compositionend", (event) => this.typeText(event.data));
  }

  /** Where the point (client coordinates) is on the picture, 0..1. */
  position(point) {
    const rect = contentRect(this.video);
    return {
      x: clamp((point.x - rect.left) / rect.width, 0, 1),
      y: clamp((point.y - rect.top) / rect.height, 0, 1),
    };
  }

  pointer(point, buttons) {
    this.send({ type: "pointer", ...this.position(point), buttons });
  }

  pointerdown(event) {
    event.preventDefault();
    this.stage.focus();
    const point = { x: event.clientX, y: event.clientY };
    this.fingers.set(event.pointerId, point);
    clearTimeout(this.gesture?.timer);
    if (this.fingers.size === 1) {
      const gesture = { kind: "tap", start: point, last: point };
      gesture.timer = setTimeout(() => this.longPress(gesture), LONG_PRESS_MS);
      this.gesture = gesture;
      this.pointer(point, 0);
    } else if (this.fingers.size === 2) {
      if (this.gesture?.kind === "drag") this.pointer(this.gesture.last, 0); // a drag ends when a second finger comes
      const [a, b] = this.fingers.values();
      this.gesture = { kind: "two", spread: distance(a, b), centre: middle(a, b), zoom: { ...this.zoom }, rest: 0 };
    }
  }

  pointermove(event) {
    if (!this.fingers.has(event.pointerId)) return;
    const point = { x: event.clientX, y: event.clientY };
    this.fingers.set(event.pointerId, point);
    const gesture = this.gesture;
    if (!gesture) return;
    if (gesture.kind === "tap" && distance(point, gesture.start) > MOVE_SLOP_PX) {
      clearTimeout(gesture.timer);
      gesture.kind = "drag";
      this.pointer(gesture.start, 1);
    }
    if (gesture.kind === "drag") {
      gesture.last = point;
      this.pointer(point, 1);
    } else if (gesture.kind === "two" && this.fingers.size === 2) {
      this.twoFingers(gesture);
    }
  }

  pointerup(event) {
    if (!this.fingers.delete(event.pointerId)) return;
    const gesture = this.gesture;
    if (this.fingers.size > 0 || !gesture) return;
    clearTimeout(gesture.timer);
    this.gesture = null;
    if (gesture.kind === "tap") {
      this.pointer(gesture.start, 1);
      this.pointer(gesture.start, 0);
    } else if (gesture.kind === "drag") {
      this.pointer(gesture.last, 0);
    }
  }

  pointercancel(event) {
    this.pointerup(event);
  }

  longPress(gesture) {
    if (this.gesture !== gesture) return;
    gesture.kind = "done"; // lifting the finger after a long press does nothing more
    this.pointer(gesture.start, 2);
    this.pointer(gesture.start, 0);
  }

  /** Two fingers moved: a pinch zooms the picture locally, a move of both scrolls the VM. */
  twoFingers(gesture) {
    const [a, b] = this.fingers.values();
    const spread = distance(a, b);
    const centre = middle(a, b);
    if (gesture.pinch || Math.abs(spread / gesture.spread - 1) > PINCH_SLOP) {
      gesture.pinch = true;
      const scale = clamp(gesture.zoom.scale * (spread / gesture.spread), 1, MAX_ZOOM);
      this.setZoom(scale, centre, gesture);
      return;
    }
    // fingers moving up scroll the page down, as on any touch screen
    const dy = gesture.centre.y - centre.y;
    const dx = gesture.centre.x - centre.x;
    gesture.centre = centre;
    if (dx || dy) this.send({ type: "wheel", dx: Math.round(dx), dy: Math.round(dy) });
  }

  /** Zoom the picture by `scale` (1: none) keeping the point between the fingers where it was. */
  setZoom(scale, centre, gesture) {
    const box = this.stage.getBoundingClientRect();
    const start = gesture.zoom;
    // the picture point under the fingers at the start of the pinch stays under them
    const px = (gesture.centre.x - box.left - start.x) / start.scale;
    const py = (gesture.centre.y - box.top - start.y) / start.scale;
    const limit = (offset, size) => clamp(offset, size * (1 - scale), 0);
    this.zoom = {
      scale,
      x: limit(centre.x - box.left - px * scale, box.width),
      y: limit(centre.y - box.top - py * scale, box.height),
    };
    this.video.style.transformOrigin = "0 0";
    this.video.style.transform =
      scale === 1 ? "" : `translate(${this.zoom.x}px, ${this.zoom.y}px) scale(${this.zoom.scale})`;
  }

  /** The on-screen keyboard: focus the field, which raises the device's keyboard. */
  showKeyboard() {
    this.field.focus();
  }

  beforeInput(event) {
    if (event.isComposing || event.inputType === "insertCompositionText") return; // compositionend types it
    event.preventDefault();
    if (event.inputType === "insertText" || event.inputType === "insertReplacementText") {
      this.typeText(event.data ?? event.dataTransfer?.getData("text/plain"));
    } else if (event.inputType === "insertLineBreak" || event.inputType === "insertParagraph") {
      this.press(["Enter"]);
    } else if (event.inputType === "deleteContentBackward") {
      this.press(["Backspace"]);
    } else if (event.inputType === "deleteContentForward") {
      this.press(["Delete"]);
    }
  }

  typeText(text) {
    for (const character of text ?? "") {
      const codes = keysFor(character);
      if (codes) this.press(codes);
    }
    this.field.value = "";
  }
}
