/**
 * The console's clipboard: text between this browser and the VM, over the input channel as
 * {"type": "clipboard", "text", "more"} messages (a long text in parts, so each fits the channel).
 * What the VM copies shows in the clipboard panel and goes to the browser's clipboard when the page
 * may write it (else the panel's Copy button does); what is pasted into the console, or sent from the
 * panel, goes to the VM. The server lets only viewers that control the VM write its clipboard, and
 * answers each text with {"type": "clipboard_outcome", "accepted", "message"}: the panel says it was sent
 * only once the server says the VM took it. The toolbar's button shows only while the VM has a clipboard.
 */

const PART_CHARS = 32768; // as the server's: JSON-escaped, a part stays below 256 KiB

export class ClipboardPanel {
  /**
   * @param {HTMLElement} stage the console's picture, where a paste goes to the VM
   * @param {HTMLElement} panel the clipboard panel (#clipboard-text, #clipboard-send, #clipboard-copy in it)
   * @param {HTMLButtonElement} toggle the toolbar button that shows and hides the panel
   * @param {(message: object) => void} send sends a message on the input channel
   */
  constructor(stage, panel, toggle, send) {
    this.panel = panel;
    this.text = panel.querySelector("#clipboard-text");
    this.note = panel.querySelector("#clipboard-note");
    this.send = send;
    this.toggle = toggle;
    this.parts = [];
    toggle.addEventListener("click", () => this.show(panel.hidden));
    panel.querySelector("#clipboard-send").addEventListener("click", () => this.toVm(this.text.value));
    panel.querySelector("#clipboard-copy").addEventListener("click", () => this.toBrowser(this.text.value));
    stage.addEventListener("paste", (event) => {
      const text = event.clipboardData?.getData("text/plain");
      if (!text) return;
      event.preventDefault();
      this.toVm(text);
    });
  }

  /** Show or hide the panel. */
  show(shown) {
    this.panel.hidden = !shown;
    this.toggle.setAttribute("aria-pressed", String(shown));
  }

  /** Whether the VM has a clipboard now (the server's state message says): the button shows only then. */
  setAvailable(available) {
    this.toggle.hidden = !available;
    if (!available) this.show(false);
  }

  /** The server's answer to a text sent: whether the VM took it, or why not. */
  outcome({ accepted, message }) {
    this.note.textContent = accepted ? "sent to the VM" : `not sent to the VM: ${message}`;
  }

  /** A clipboard message from the server: a part of what the VM copied. */
  receive(message) {
    if (typeof message.text !== "string") return;
    this.parts.push(message.text);
    if (message.more) return;
    const text = this.parts.join("");
    this.parts = [];
    this.text.value = text;
    this.note.textContent = "copied in the VM";
    this.toBrowser(text);
  }

  /** Give the VM `text` as its clipboard. */
  toVm(text) {
    const parts = Math.max(1, Math.ceil(text.length / PART_CHARS));
    for (let index = 0; index < parts; index++) {
      const part = text.slice(index * PART_CHARS, (index + 1) * PART_CHARS);
      this.send({ type: "clipboard", text: part, more: index < parts - 1 });
    }
    this.note.textContent = "sending to the VM…";
  }

  /** Put `text` on the browser's clipboard where the page may; otherwise the Copy button is there. */
  toBrowser(text) {
    navigator.clipboard?.writeText(text).catch(() => {
      this.note.textContent = "copied in the VM – press Copy to put it on this computer's clipboard";
    });
  }
}
