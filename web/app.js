/**
 * The web console's entry: `/` lists sessions, `/?session=ID` is that session's console (`&node=NAME`
 * through a gateway, which then finds the session on that host).
 * A token may come with the address (`&token=T`, or `#token=T` as the server's console_url puts
 * it, which never reaches a server log); it is kept for this tab only and taken out of the
 * address bar and history.
 */

import { startConsole } from "./console.js";
import { OPERATOR_TOKEN_KEY, showSessions } from "./sessions.js";

/**
 * The token in the address, else the one this tab kept under `key` earlier (say, before a reload).
 * @param {string} key sessionStorage key
 * @returns {string|null}
 */
function takeToken(key) {
  const url = new URL(location.href);
  const fragment = new URLSearchParams(url.hash.slice(1));
  const token = url.searchParams.get("token") || fragment.get("token");
  if (url.searchParams.has("token") || fragment.has("token")) {
    url.searchParams.delete("token");
    fragment.delete("token");
    url.hash = fragment.toString();
    history.replaceState(history.state, "", url);
  }
  if (token) sessionStorage.setItem(key, token);
  return token || sessionStorage.getItem(key);
}

const params = new URLSearchParams(location.search);
const sessionId = params.get("session");
// transport=webrtc|websocket pins what carries the stream; auto (the default) picks: WebRTC where it can;
// quality=0|1|2 keeps the stream on that rung of the session's ladder (the server checks it)
const transport = ["webrtc", "websocket"].includes(params.get("transport")) ? params.get("transport") : "auto";
if (sessionId) {
  // a console link's own token, else the operator's (who came here from the session list)
  const token = takeToken(`vgpustream:token:${sessionId}`) || sessionStorage.getItem(OPERATOR_TOKEN_KEY);
  startConsole(sessionId, token, transport, params.get("node"), params.get("quality"));
} else {
  showSessions(document.getElementById("sessions"), takeToken(OPERATOR_TOKEN_KEY));
}
