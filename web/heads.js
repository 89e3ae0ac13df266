/**
 * The head switcher: a VM with more than one display head (QEMU's `virtio-vga,max_outputs=2`) shows each in
 * a session of its own. The toolbar's #heads menu, shown only where the VM has two heads or more, switches
 * this window to another head or opens one in a window of its own. Either asks the server for a console link
 * to that head with this console's own token (`POST …/heads/{n}/link`), which makes the head's session where
 * there is none; the link's token has this one's role and expires when it does.
 */

import { errorOf } from "./http.js";

export class HeadSwitcher {
  /**
   * @param {HTMLSelectElement} menu the toolbar's #heads
   * @param {string} sessionId this console's session
   * @param {string|null} token this console's token
   * @param {string} route the query naming the session's host to a gateway ("" without one)
   * @param {(message: string) => void} complain shows why a head could not be opened
   */
  constructor(menu, sessionId, token, route, complain) {
    this.menu = menu;
    this.base = `/api/v1/sessions/${encodeURIComponent(sessionId)}/heads`;
    this.sessionId = sessionId;
    this.headers = token ? { Authorization: `Bearer ${token}` } : {};
    this.route = route;
    this.complain = complain;
    menu.addEventListener("change", () => this.choose(menu.value));
  }

  /** Ask the server for the VM's heads and show the menu where there are two or more. */
  async refresh() {
    let heads = [];
    try {
      const response = await fetch(`${this.base}${this.route}`, { headers: this.headers });
      if (response.ok) ({ heads } = await response.json());
    } catch {
      // no heads to offer: the menu stays hidden
    }
    this.menu.replaceChildren();
    const show = this.group("Show");
    const open = this.group("Open in a new window");
    for (const head of heads) {
      const name = `Display ${head.console + 1}${head.state === "no_signal" ? " (off)" : ""}`;
      const current = head.session === this.sessionId;
      show.append(new Option(name, `show:${head.console}`, current, current));
      if (!current) open.append(new Option(`${name} in a new window`, `window:${head.console}`));
    }
    this.current = show.querySelector("option[selected]")?.value ?? "";
    this.menu.value = this.current;
    this.menu.hidden = heads.length < 2;
  }

  group(label) {
    const group = document.createElement("optgroup");
    group.label = label;
    this.menu.append(group);
    return group;
  }

  /** Switch to a head (`show:N`) or open one in a new window (`window:N`). */
  async choose(value) {
    const [what, head] = value.split(":");
    this.menu.value = this.current;
    if (value === this.current || head === undefined) return;
    // opened now, while the click still counts as the person's: a window opened after the request would be blocked
    const opened = what === "window" ? window.open("", "_blank") : null;
    try {
      const response = await fetch(`${this.base}/${head}/link${this.route}`, { method: "POST", headers: this.headers });
      if (!response.ok) throw await errorOf(response);
      const { console_url: link } = await response.json();
      if (opened) opened.location.href = link;
      else location.assign(link);
    } catch (error) {
      opened?.close();
      this.complain(`Display ${Number(head) + 1} cannot be opened: ${error.message}`);
    }
  }
}
