/** The session list: what runs on this server, each with a link to its console. */

const REFRESH_MS = 3000;
export const TOKEN_KEY = "vgpustream:operator";

function cell(row, text) {
  const td = row.insertCell();
  td.textContent = text;
  return td;
}

/** Show the list in `root`, refreshing it; asks for an operator token when the API wants one. */
export function showSessions(root, operatorToken) {
  const table = root.querySelector("#session-table tbody");
  const status = root.querySelector("#sessions-status");
  const form = root.querySelector("#operator-form");
  let token = operatorToken || sessionStorage.getItem(TOKEN_KEY);
  root.hidden = false;

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    token = root.querySelector("#operator-token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    form.hidden = true;
    refresh();
  });

  async function refresh() {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    let response;
    try {
      response = await fetch("/api/v1/sessions", { headers });
    } catch (error) {
      status.textContent = `cannot reach the server: ${error.message}`;
      return;
    }
    if (response.status === 401 || response.status === 403) {
      status.textContent = "The session list needs an operator token (or open a console link).";
      form.hidden = false;
      return;
    }
    const { sessions } = await response.json();
    status.textContent = `${sessions.length} session${sessions.length === 1 ? "" : "s"}`;
    table.replaceChildren();
    for (const session of sessions) {
      const row = table.insertRow();
      const link = document.createElement("a");
      link.href = `/?session=${encodeURIComponent(session.id)}`;
      link.textContent = session.name || session.id;
      row.insertCell().append(link);
      cell(row, session.source);
      cell(row, session.state);
      const primary = session.planes.primary;
      cell(row, primary ? `${primary.width}×${primary.height} ${primary.fourcc}` : "–");
      cell(row, String(session.stats.viewers));
      cell(row, session.stats.fps.toFixed(1));
    }
  }

  refresh();
  setInterval(() => form.hidden && refresh(), REFRESH_MS);
}

