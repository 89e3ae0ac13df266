/**
 * The console's toolbar fits any window, from a phone's 360 px to 3840 px: it stays one line, its labels
 * never wrap, and the controls that do not fit go, from the right, into its More menu (a button at its end,
 * whose menu opens above it). It fits again when the window changes size and when a control shows or hides
 * (the speaker once the VM's sound plays, the Clipboard button where the VM has a clipboard).
 */

export class Toolbar {
  /**
   * @param {HTMLElement} toolbar the toolbar; its `.control` children are the controls, in order
   * @param {HTMLElement} more the More menu's wrapper (its button and the menu), the toolbar's last child
   */
  constructor(toolbar, more) {
    this.toolbar = toolbar;
    this.more = more;
    this.button = more.querySelector("button");
    this.menu = more.querySelector("[role=menu]");
    this.controls = [...toolbar.querySelectorAll(":scope > .control")];
    this.button.addEventListener("click", () => this.open(this.menu.hidden));
    // a choice made in the menu closes it (not the volume slider: it is dragged)
    this.menu.addEventListener("click", (event) => event.target.closest("button") && this.open(false));
    this.menu.addEventListener("change", (event) => event.target.tagName === "SELECT" && this.open(false));
    document.addEventListener("pointerdown", (event) => !more.contains(event.target) && this.open(false));
    document.addEventListener("keydown", (event) => event.key === "Escape" && this.open(false));
    const shownOrHidden = new MutationObserver((records) => {
      if (records.some(({ target, oldValue }) => oldValue !== target.getAttribute("hidden"))) this.fit();
    });
    for (const control of this.controls) {
      shownOrHidden.observe(control, { attributeFilter: ["hidden"], attributeOldValue: true });
    }
    addEventListener("resize", () => this.fit());
    document.fonts?.ready.then(() => this.fit());
    this.fit();
  }

  /** Open or close the More menu. */
  open(opened) {
    this.menu.hidden = !opened;
    this.button.setAttribute("aria-expanded", String(opened));
  }

  /** Whether the toolbar's content is wider than the toolbar. */
  overflows() {
    return this.toolbar.scrollWidth > this.toolbar.clientWidth;
  }

  /** Every control back on the toolbar, then the last ones into the menu until the rest fit. */
  fit() {
    const focused = document.activeElement; // moved, a control loses the focus: it gets it back below
    for (const control of this.controls) this.more.before(control);
    this.more.hidden = !this.overflows();
    const onToolbar = [...this.controls];
    while (!this.more.hidden && this.overflows() && onToolbar.length) this.menu.prepend(onToolbar.pop());
    if (this.more.hidden) this.open(false);
    if (focused !== document.activeElement) focused?.focus();
  }
}
