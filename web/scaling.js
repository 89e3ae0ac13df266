/**
 * How the VM's picture meets the window, chosen in the toolbar's #scaling menu:
 * - "resize": the VM is asked for the window's size in device pixels ({"type":"resize","width","height",
 *   "scale": devicePixelRatio} on the input channel, RESIZE_DEBOUNCE_MS after the window stops changing)
 *   and its picture, once it follows, is shown 1:1; the default where the VM can follow;
 * - "fit": the picture scaled to the window, letterboxed (the default where it cannot);
 * - "1:1": one device pixel per guest pixel (HiDPI-correct), with scroll bars when it is larger.
 * The server says in its state messages whether the VM can follow (`resizable`); where it cannot, the
 * resize choice is greyed out.
 */

const RESIZE_DEBOUNCE_MS = 300;
const MIN_EDGE = 64;
const MAX_EDGE = 16384;

export class Scaling {
  /**
   * @param {HTMLElement} stage the element the picture is shown in (its size is the window's share)
   * @param {HTMLVideoElement} video the picture
   * @param {HTMLSelectElement} menu the toolbar's choice of mode
   * @param {(message: object) => void} send sends one input message (dropped while there is no channel)
   */
  constructor(stage, video, menu, send) {
    this.stage = stage;
    this.video = video;
    this.menu = menu;
    this.send = send;
    this.resizable = false;
    /** The mode the person picked; null while they have not, and the default for the VM applies. */
    this.chosen = null;
    /** The size last asked of the VM on the current connection ("1280x720@2"), to ask only for changes. */
    this.asked = null;
    this.timer = null;
    menu.addEventListener("change", () => {
      this.chosen = menu.value;
      this.apply();
    });
    new ResizeObserver(() => this.windowChanged()).observe(stage);
    video.addEventListener("resize", () => this.apply());
    this.apply();
  }

  get mode() {
    const wanted = this.chosen ?? (this.resizable ? "resize" : "fit");
    return wanted === "resize" && !this.resizable ? "fit" : wanted;
  }

  /** The server told whether the VM can follow the window (every state message says it). */
  setResizable(resizable) {
    if (resizable === this.resizable) return;
    this.resizable = resizable;
    this.apply();
  }

  /** The connection went: the next one says again whether the VM can follow, and the VM is asked again. */
  reset() {
    this.asked = null;
    clearTimeout(this.timer);
    this.setResizable(false);
  }

  apply() {
    const mode = this.mode;
    this.menu.querySelector('option[value="resize"]').disabled = !this.resizable;
    this.menu.value = mode;
    this.stage.dataset.scaling = mode;
    const { videoWidth, videoHeight } = this.video;
    const unscaled = mode === "1:1" && videoWidth && videoHeight;
    this.video.style.width = unscaled ? `${videoWidth / devicePixelRatio}px` : "";
    this.video.style.height = unscaled ? `${videoHeight / devicePixelRatio}px` : "";
    if (mode === "resize" && this.asked === null) this.askVm();
  }

  windowChanged() {
    if (this.mode !== "resize") return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.askVm(), RESIZE_DEBOUNCE_MS);
  }

  /** Ask the VM for the stage's size in device pixels, rounded down to even (as H.264 pictures are). */
  askVm() {
    const scale = devicePixelRatio;
    const edge = (css) => Math.min(MAX_EDGE, Math.max(MIN_EDGE, Math.floor(css * scale) & ~1));
    const width = edge(this.stage.clientWidth);
    const height = edge(this.stage.clientHeight);
    const size = `${width}x${height}@${scale}`;
    if (size === this.asked) return;
    this.asked = size;
    this.send({ type: "resize", width, height, scale });
  }
}
