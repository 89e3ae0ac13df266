/**
 * The web console. `/` lists sessions; `/?session=ID#token=T` is a console: WHEP playback of the
 * session, keyboard and mouse to the VM, stats, fullscreen, automatic reconnection. The token
 * arrives in the URL fragment (never sent to a server), is moved to sessionStorage and removed
 * from the address bar and history.
 */

import { RemoteCursor } from "./cursor.js";
import { InputCapture } from "./input.js";
import { showSessions, TOKEN_KEY } from "./sessions.js";
import { StatsOverlay } from "./stats.js";
import { WhepClient, WhepError } from "./whep.js";

const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 8000;

/** The token from the URL fragment (kept for this tab only), else the one kept earlier. */
function takeToken(key) {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  if (token) {
    sessionStorage.setItem(key, token);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return token || sessionStorage.getItem(key);
}

function startConsole(sessionId) {
  const root = document.getElementById("console");
  const stage = document.getElementById("stage");
  const video = document.getElementById("screen");
  const status = document.getElementById("status");
  const badge = document.getElementById("connection");
  // a console link's token, else the operator's (who came here from the session list)
  const token = takeToken(`vgpustream:token:${sessionId}`) || sessionStorage.getItem(TOKEN_KEY);
  const cursor = new RemoteCursor(stage);
  const overlay = new StatsOverlay(document.getElementById("stats"));
  /** What automated tests and curious people can look at; kept current across reconnects. */
  const state = (window.vgpustream = { pc: null, channel: null, state: "connecting" });
  let backoff = BACKOFF_START_MS;
  let whep = null;
  let retryTimer = null;

  root.hidden = false;
  document.title = `${sessionId} – vgpustream`;
  document.getElementById("session-name").textContent = sessionId;

  const send = (event) => {
    if (state.channel && state.channel.readyState === "open") state.channel.send(JSON.stringify(event));
  };
  const input = new InputCapture(stage, video, send);

  function show(phase, message = "", error = false) {
    state.state = phase;
    badge.textContent = phase;
    badge.className = `badge ${phase}`;
    status.textContent = message;
    status.classList.toggle("error", error);
  }

  function teardown() {
    // forget the connection before closing it: closing fires events whose handlers must see it gone
    const { pc } = state;
    const resource = whep;
    whep = state.pc = state.channel = null;
    input.releaseAll();
    cursor.reset();
    if (resource) resource.close();
    if (pc) pc.close();
  }

  function retry(error) {
    teardown();
    clearTimeout(retryTimer);
    const permanent = error instanceof WhepError && [400, 401, 403, 404].includes(error.status);
    if (permanent) {
      show("failed", error.message, true);
      return;
    }
    const wait = error instanceof WhepError && error.retryAfter ? error.retryAfter * 1000 : backoff;
    backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    show("reconnecting", `${error.message || error} – reconnecting in ${Math.ceil(wait / 1000)} s`);
    retryTimer = setTimeout(connect, wait);
  }

  async function connect() {
    show("connecting", "connecting…");
    try {
      whep = new WhepClient(`/whep/${encodeURIComponent(sessionId)}`, token);
      const pc = (state.pc = new RTCPeerConnection({ iceServers: await whep.iceServers() }));
      const transceiver = pc.addTransceiver("video", { direction: "recvonly" });
      const h264 = (RTCRtpReceiver.getCapabilities("video")?.codecs || []).filter((c) => c.mimeType === "video/H264");
      if (h264.length && transceiver.setCodecPreferences) transceiver.setCodecPreferences(h264);
      const channel = (state.channel = pc.createDataChannel("input", { ordered: true }));
      channel.onmessage = (event) => {
        const message = JSON.parse(event.data);
        if (message.type === "cursor") cursor.update(message);
      };
      channel.onclose = () => state.pc === pc && retry(new Error("input channel closed"));
      pc.ontrack = (event) => {
        video.srcObject = event.streams[0] || new MediaStream([event.track]);
      };
      pc.onconnectionstatechange = () => {
        if (state.pc !== pc) return;
        if (pc.connectionState === "connected") {
          backoff = BACKOFF_START_MS;
          show("playing");
        } else if (pc.connectionState === "failed" || pc.connectionState === "closed") {
          retry(new Error(`connection ${pc.connectionState}`));
        }
      };
      await whep.connect(pc);
    } catch (error) {
      retry(error);
    }
  }

  document.getElementById("keys").addEventListener("change", (event) => {
    if (event.target.value) input.combo(event.target.value.split("+"));
    event.target.value = "";
    stage.focus();
  });
  document.getElementById("stats-toggle").addEventListener("click", (event) => {
    overlay.toggle(() => state.pc);
    event.target.setAttribute("aria-pressed", String(overlay.visible));
  });
  document.getElementById("fullscreen").addEventListener("click", async () => {
    if (document.fullscreenElement) {
      await document.exitFullscreen();
      return;
    }
    await root.requestFullscreen();
    // in fullscreen, let keys the browser would take (Escape, Alt+Tab, …) reach the VM where allowed
    await navigator.keyboard?.lock?.().catch(() => {});
    stage.focus();
  });
  document.addEventListener("fullscreenchange", () => {
    if (!document.fullscreenElement) navigator.keyboard?.unlock?.();
  });
  addEventListener("pagehide", teardown);
  connect();
}

const sessionId = new URLSearchParams(location.search).get("session");
if (sessionId) {
  startConsole(sessionId);
} else {
  showSessions(document.getElementById("sessions"), takeToken(TOKEN_KEY));
}
