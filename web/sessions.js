/** The session list: what runs on this server, each with a link to its console. */

import { errorOf, HttpError } from "./http.js";
import { recordingMarks, showRecordings } from "./recordings.js";
import { thumbnail } from "./thumbnails.js";

const REFRESH_MS = 3000;

/** sessionStorage key of the operator token, which the console also uses when its link has none. */
export const OPERATOR_TOKEN_KEY = "vgpustream:operator";

/**
 * The sessions the API lists.
 * @param {string|null} token operator token, sent as a Bearer token when given
 * @returns {Promise<object[]>}
 */
async function fetchSessions(token) {
  const response = await fetch("/api/v1/sessions", { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  if (!response.ok) throw await errorOf(response);
  return (await response.json()).sessions;
}

/** One table row; fields the contract leaves optional (name, fps) show as "–" when absent. */
function sessionRow(table, session, token, openRecordings) {
  const row = table.insertRow();
  row.dataset.session = session.id;
  const link = document.createElement("a");
  // a gateway's list names each session's node: the console then names it too
  link.href = `/?${new URLSearchParams({ session: session.id, ...(session.node ? { node: session.node } : {}) })}`;
  link.textContent = session.name || session.id;
  if (session.name) link.title = session.id;
  row.insertCell().append(link, ...recordingMarks(session, () => openRecordings(session)));
  const primary = session.planes?.primary;
  const fps = session.stats?.fps;
  for (const text of [
    session.source,
    session.state,
    primary ? `${primary.width}×${primary.height} ${primary.fourcc}` : "–",
    String(session.stats?.viewers ?? "–"),
    typeof fps === "number" ? fps.toFixed(1) : "–",
  ]) {
    row.insertCell().textContent = text;
  }
  row.cells[2].className = `state ${session.state}`;
  if (session.message) {
    // why capturing the source failed last (the server bounds it)
    const why = document.createElement("div");
    why.className = "why";
    why.textContent = session.message;
    row.cells[2].append(why);
  }
  row.insertCell(0).append(thumbnail(session.id, token));
}

/**
 * Show the list in `root` and keep it current; asks for an operator token when the API wants one.
 * @param {HTMLElement} root the #sessions element
 * @param {string|null} token the operator token, if this tab has one
 */
export function showSessions(root, token) {
  const table = root.querySelector("#session-table tbody");
  const status = root.querySelector("#sessions-status");
  const form = root.querySelector("#operator-form");
  let operatorToken = token;
  root.hidden = false;

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    operatorToken = root.querySelector("#operator-token").value.trim();
    sessionStorage.setItem(OPERATOR_TOKEN_KEY, operatorToken);
    form.hidden = true;
    refresh();
  });

  async function refresh() {
    let sessions;
    try {
      sessions = await fetchSessions(operatorToken);
    } catch (error) {
      const refused = error instanceof HttpError && (error.status === 401 || error.status === 403);
      form.hidden = !refused; // an operator may enter a token; and the list stops asking meanwhile
      if (refused && error.tokenError === "insufficient_scope" && operatorToken === token) {
        // the address's own token is a console link's, which lost the part that says which session
        status.textContent =
          "This link is for one VM's console, but its address does not say which one (it lacks ?session=…). " +
          "Ask whoever gave you the link for a new one.";
      } else if (refused) {
        status.textContent = `${error.message} – enter an operator token, or open a console link.`;
      } else {
        status.textContent = `cannot list sessions: ${error.message}`;
      }
      status.classList.add("error");
      return;
    }
    status.classList.remove("error");
    status.textContent = `${sessions.length} session${sessions.length === 1 ? "" : "s"}`;
    table.replaceChildren();
    const openRecordings = (session) => showRecordings(root.querySelector("#recordings"), session, operatorToken);
    for (const session of sessions) sessionRow(table, session, operatorToken, openRecordings);
  }

  async function poll() {
    // while the token form is up there is nothing new to ask with
    if (form.hidden) await refresh();
    setTimeout(poll, REFRESH_MS);
  }
  poll();
}
