/**
 * The guest's cursor, from {"type":"cursor"} messages on the input channel, shown as the browser's
 * own cursor over the picture (no round trip for the pointer to move). When the server draws the
 * cursor into the picture for some other viewer ("composited"), the local one is hidden.
 */

export class RemoteCursor {
  /** @param {HTMLElement} element the element the pointer moves over */
  constructor(element) {
    this.element = element;
    this.image = null;
  }

  /** Apply one {"type":"cursor"} message; the image comes only when it changes. */
  update(message) {
    if (message.image) this.image = message;
    if (message.composited || !message.visible) {
      this.element.style.cursor = message.composited ? "none" : "default";
    } else if (this.image) {
      this.element.style.cursor = `url("${this.image.image}") ${message.hot_x} ${message.hot_y}, default`;
    }
  }

  /** Back to the browser's cursor, for a new connection (which sends its image afresh). */
  reset() {
    this.image = null;
    this.element.style.cursor = "";
  }
}
