/**
 * Pointer lock, for guests whose pointer is relative (a mouse without a tablet: positions mean nothing
 * to it). Where the server says so (`relative_pointer` in its state messages), a click on the picture
 * locks the pointer to it; the toolbar's #pointer-lock button locks it for any guest. While locked,
 * input.js sends relative motion; Escape (the browser's own exit) unlocks it.
 */

export class PointerLock {
  /**
   * @param {HTMLElement} stage the element the pointer is locked to
   * @param {HTMLButtonElement} button the toolbar's lock button (pressed while locked)
   */
  constructor(stage, button) {
    this.stage = stage;
    this.relative = false;
    stage.addEventListener("click", () => this.relative && this.lock());
    button.addEventListener("click", () => this.lock());
    document.addEventListener("pointerlockchange", () => {
      button.setAttribute("aria-pressed", String(this.locked));
      if (!this.locked) stage.focus();
    });
    document.addEventListener("pointerlockerror", () => button.setAttribute("aria-pressed", "false"));
  }

  get locked() {
    return document.pointerLockElement === this.stage;
  }

  /** The server told whether the guest's pointer is relative. */
  setRelative(relative) {
    this.relative = relative;
  }

  /** Lock the pointer to the stage, with raw (unaccelerated) motion where the browser offers it. */
  async lock() {
    if (this.locked) return;
    try {
      await this.stage.requestPointerLock({ unadjustedMovement: true });
    } catch {
      await this.stage.requestPointerLock()?.catch?.(() => {}); // unadjustedMovement not offered here
    }
  }
}
