/**
 * The console page: WHEP playback of one session, keyboard and mouse to the VM, stats,
 * fullscreen, reconnection with exponential backoff, and what the server says of the VM's display
 * (its `state` messages on the input channel) over the picture and in the badge. One connection at
 * a time: each attempt owns a WhepClient (the viewer resource) and an RTCPeerConnection, and
 * teardown() closes both.
 */

import { ClipboardPanel } from "./clipboard.js";
import { RemoteCursor } from "./cursor.js";
import { HeadSwitcher } from "./heads.js";
import { HttpError } from "./http.js";
import { InputCapture } from "./input.js";
import { Microphone } from "./microphone.js";
import { PointerLock } from "./pointerlock.js";
import { Speaker } from "./sound.js";
import { Scaling } from "./scaling.js";
import { TouchInput } from "./touch.js";
import { Toolbar } from "./toolbar.js";
import { typeText } from "./typing.js";
import { DelayMeter, NO_CAPTURE_TIME, rtpCaptureTime } from "./delay.js";
import { StatsOverlay, webrtcCounters } from "./stats.js";
import { WhepClient } from "./whep.js";
import { WebSocketClient, WebSocketClosed, canDecode } from "./wsclient.js";

const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 8000;
// ICE that never succeeds takes Chromium half a minute to call "failed"; do not wait that long
const CONNECT_TIMEOUT_MS = 15000;
// answers that retrying will not change: bad request, no or wrong token, no such session
const PERMANENT_STATUSES = new Set([400, 401, 403, 404]);
// the WebSocket's close codes that retrying will not change: a bad auth message, no or wrong token, revoked
const PERMANENT_CLOSE_CODES = new Set([4400, 4401, 4403]);
// transport=auto: WebRTC that has not connected by then gives way to the WebSocket
const WEBRTC_GRACE_MS = 2000;
/** What the console says, once connected, for each state of the VM's display the server tells. */
const SOURCE_STATES = {
  streaming: { badge: "playing", message: "" },
  starting: { badge: "starting", message: "Connecting to the VM's display…" },
  no_signal: { badge: "no signal", message: "The guest turned its display off" },
  lost: {
    badge: "not available",
    message: "The VM's display is not available (the VM is not running or its socket is missing) — retrying",
    error: true,
  },
};

/** What the console says where the server rejected the video (the browser's WebRTC has neither codec). */
const NO_VIDEO_CODEC =
  "This browser's WebRTC decodes neither H.264 nor VP8, the videos this console sends, so there is no " +
  "picture (keyboard and mouse still reach the VM). Open the console with transport=websocket instead.";

const ABS_CAPTURE_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time";

/** What a person whose link does not do is told to do: links come from someone, who can make a new one. */
const ASK_FOR_A_NEW_LINK = "Ask whoever gave you the link for a new one.";

/**
 * What the console says where the server refuses this viewer for good (a status, or the WebSocket's close
 * code for it), in a person's words: what is wrong with the link, and what to do next.
 * @param {number} status 400, 401, 403 or 404
 * @param {string} why the server's message
 * @param {string} sessionId
 */
function refusal(status, why, sessionId) {
  if (status === 401) return `This link has no access key in it, so it cannot show the VM. ${ASK_FOR_A_NEW_LINK}`;
  if (status === 403) return `This link does not open the VM any more (${why}). ${ASK_FOR_A_NEW_LINK}`;
  if (status === 404) return `There is no VM "${sessionId}" here (it may have been removed). ${ASK_FOR_A_NEW_LINK}`;
  return `The server refused this link (${why}). ${ASK_FOR_A_NEW_LINK}`;
}

/** The video codecs the server sends over WebRTC, in its order of preference. */
const SERVER_CODECS = ["video/h264", "video/vp8"];

/** Whether this browser's WebRTC can receive one of the session's videos (H.264, or VP8 without it). */
function webrtcCanPlay() {
  if (typeof RTCPeerConnection !== "function") return false;
  const codecs = RTCRtpReceiver.getCapabilities?.("video")?.codecs ?? [];
  return codecs.some(({ mimeType }) => SERVER_CODECS.includes(mimeType.toLowerCase()));
}

/**
 * Receive video, preferring what the server sends best: H.264 constrained baseline, packetization-mode
 * 1 (the server picks VP8 where the browser has no H.264), and asking for each frame's capture time
 * (abs-capture-time, off by default in Chromium), from which the console tells the glass-to-glass delay.
 * @returns {RTCRtpTransceiver}
 */
function addVideoTransceiver(pc) {
  const transceiver = pc.addTransceiver("video", { direction: "recvonly" });
  if (transceiver.setHeaderExtensionsToNegotiate) {
    const extensions = transceiver.getHeaderExtensionsToNegotiate();
    for (const extension of extensions) {
      if (extension.uri === ABS_CAPTURE_TIME) extension.direction = "recvonly";
    }
    transceiver.setHeaderExtensionsToNegotiate(extensions);
  }
  const codecs = RTCRtpReceiver.getCapabilities?.("video")?.codecs;
  if (codecs && transceiver.setCodecPreferences) {
    const rank = ({ mimeType, sdpFmtpLine = "" }) => {
      if (mimeType.toLowerCase() !== "video/h264") return 2;
      return /packetization-mode=1/.test(sdpFmtpLine) && /profile-level-id=42e0/i.test(sdpFmtpLine) ? 0 : 1;
    };
    // a stable sort keeps every codec (rtx and friends included), H.264 first
    transceiver.setCodecPreferences([...codecs].sort((a, b) => rank(a) - rank(b)));
  }
  return transceiver;
}

/**
 * Run the console for one session in the #console element.
 * @param {string} sessionId
 * @param {string|null} token viewer or operator token for the WHEP requests, if any
 * @param {string} transport auto, webrtc or websocket
 * @param {string|null} node the session's host, named to a gateway in every request's query
 * @param {string|null} quality the rung of the session's ladder to stay on ("0" is the top), in the WHEP and
 *   WebSocket requests' query; null: the server's ladder picks by the link
 */
export function startConsole(sessionId, token, transport = "auto", node = null, quality = null) {
  const asked = Object.entries({ node, quality }).filter(([, value]) => value);
  const route = asked.length ? `?${new URLSearchParams(asked)}` : "";
  const root = document.getElementById("console");
  const stage = document.getElementById("stage");
  const video = document.getElementById("screen");
  const status = document.getElementById("status");
  const badge = document.getElementById("connection");
  const linkWarning = document.getElementById("link-warning");
  const fullscreenButton = document.getElementById("fullscreen");
  const cursor = new RemoteCursor(stage);
  const speaker = new Speaker(video, document.getElementById("speaker"), document.getElementById("volume"));
  /** For automated tests (and the curious): the current connection, kept current across reconnects. */
  const state = (window.vgpustream = {
    pc: null,
    channel: null,
    state: "connecting",
    source: null,
    link: "good",
    video: null, // whether the server sends video: false where it rejected the browser's video section
    expired: null, // what the server said when this viewer's link ran out and it may only watch
    // webrtc or websocket: what carries the stream (transport=auto settles on one and keeps it)
    transport: transport === "websocket" || (transport === "auto" && !webrtcCanPlay()) ? "websocket" : "webrtc",
    socket: null, // the WebSocket transport's client, while it carries the stream
    microphone: null, // web/microphone.js: its track while the person's microphone is on
  });
  const connected = () => state.pc?.connectionState === "connected" || state.socket?.channel.readyState === "open";
  const sendMessage = (message) => {
    if (state.channel?.readyState === "open") state.channel.send(JSON.stringify(message));
  };
  const delay = new DelayMeter(video, sendMessage);
  state.delay = delay; // what it measured, for benches (vgpustream bench weaknet --cap-kbit)
  const overlay = new StatsOverlay(document.getElementById("stats"), delay);
  const input = new InputCapture(stage, video, sendMessage);
  const clipboard = new ClipboardPanel(
    stage,
    document.getElementById("clipboard"),
    document.getElementById("clipboard-toggle"),
    sendMessage,
  );
  const microphone = new Microphone(
    document.getElementById("microphone"),
    document.getElementById("microphone-note"),
    sendMessage,
  );
  state.microphone = microphone;
  const scaling = new Scaling(stage, video, document.getElementById("scaling"), sendMessage);
  const pointerLock = new PointerLock(stage, document.getElementById("pointer-lock"));
  const press = (codes) => input.combo(codes);
  const touch = new TouchInput(stage, video, document.getElementById("osk"), sendMessage, press);
  const complain = (why) => show("failed", why, true);
  const heads = new HeadSwitcher(document.getElementById("heads"), sessionId, token, route, complain);
  let headsAsked = false;
  new Toolbar(document.getElementById("toolbar"), document.getElementById("more"));
  let whep = null;
  let leaving = Promise.resolve(); // the previous viewer resource's DELETE
  let backoff = BACKOFF_START_MS;
  let connectTimer = null;
  let retryTimer = null;
  let countdownTimer = null;

  root.hidden = false;
  showName(sessionId);

  /** The session's name where people read it (its id until the server tells the name). */
  function showName(name) {
    document.title = `${name} – vgpustream`;
    const shown = document.getElementById("session-name");
    shown.textContent = name;
    shown.title = name === sessionId ? "" : `session ${sessionId}`;
  }

  /**
   * Show a phase in the badge and state: connecting, reconnecting, failed, closed while there is no
   * connection; once connected, the display's state (playing, starting, no_signal, lost).
   */
  function show(phase, message = "", error = false, label = phase, detail = "") {
    state.state = phase;
    badge.textContent = state.transport === "websocket" ? `${label} · WebSocket` : label;
    badge.title = `over ${state.transport === "websocket" ? "a WebSocket" : "WebRTC"}`;
    badge.className = `badge ${phase}`;
    status.textContent = message;
    if (detail) {
      const why = document.createElement("small");
      why.textContent = detail;
      status.append(document.createElement("br"), why);
    }
    status.classList.toggle("error", error);
    stage.dataset.phase = phase;
  }

  /** Connected: say what the server last told of the VM's display ("starting" until it tells). */
  function showSource() {
    if (state.video === false) {
      show("unsupported", NO_VIDEO_CODEC, true, "no picture");
      return;
    }
    const { state: told = "starting", message: why } = state.source || {};
    const phase = told === "streaming" ? "playing" : told;
    const { badge: label, message, error = false } = SOURCE_STATES[told] || SOURCE_STATES.starting;
    if (state.expired !== null && told === "streaming") {
      show(phase, state.expired, false, "view only"); // the link's time is up: it only watches from now on
      return;
    }
    show(phase, message, error, label, told === "streaming" ? "" : why);
  }

  /** The server's verdict on this viewer's network link: a warning over the picture while it is poor. */
  function showLink({ quality, loss = 0, dropped = 0 }) {
    state.link = quality;
    linkWarning.hidden = quality !== "poor";
    const lost = loss > 0 ? `${Math.round(loss * 100)}% of packets lost` : "";
    const behind = dropped > 0 ? "the stream fell behind" : "";
    const why = [lost, behind].filter(Boolean).join(", ");
    linkWarning.textContent = `Your network cannot carry this stream${why ? ` (${why})` : ""}: the picture may stutter`;
  }

  function stopTimers() {
    clearTimeout(connectTimer);
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
  }

  /** Close the current connection, telling the VM first that no key is held any more. */
  function teardown() {
    input.releaseAll();
    // forget the connection before closing it: handlers of the events closing fires must see it gone
    const { pc, socket } = state;
    if (whep) leaving = whep.close();
    whep = state.pc = state.channel = state.source = state.video = state.expired = state.socket = null;
    socket?.close();
    showLink({ quality: "good" });
    cursor.reset();
    speaker.reset();
    microphone.reset();
    scaling.reset();
    pc?.close();
  }

  function retry(error) {
    stopTimers();
    teardown();
    if (error instanceof HttpError && PERMANENT_STATUSES.has(error.status)) {
      show("failed", refusal(error.status, error.message, sessionId), true);
      return;
    }
    const wait = error instanceof HttpError && error.retryAfter !== null ? error.retryAfter * 1000 : backoff;
    backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    const due = performance.now() + wait;
    const countdown = () => {
      const seconds = Math.max(1, Math.ceil((due - performance.now()) / 1000));
      show("reconnecting", `${error.message} – reconnecting in ${seconds} s`, true);
    };
    countdown();
    countdownTimer = setInterval(countdown, 1000);
    retryTimer = setTimeout(connect, wait);
  }

  function receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return; // not a message of ours
    }
    if (message?.type === "cursor") cursor.update(message);
    if (message?.type === "clipboard") clipboard.receive(message);
    if (message?.type === "clipboard_outcome") clipboard.outcome(message);
    if (message?.type === "microphone") microphone.outcome(message);
    if (message?.type === "state") {
      state.source = { state: message.state, message: message.message ?? null };
      scaling.setResizable(message.resizable === true);
      clipboard.setAvailable(message.clipboard === true);
      microphone.setAvailable(message.microphone === true);
      showName(message.name || sessionId);
      if (!headsAsked) {
        headsAsked = true;
        heads.refresh(); // once a connection shows the token works
      }
      pointerLock.setRelative(message.relative_pointer === true);
      if (connected()) showSource();
    }
    if (message?.type === "link") showLink(message);
    if (message?.type === "expired") {
      state.expired = message.message;
      if (connected()) showSource();
    }
    if (message?.type === "disconnect") {
      // the server lets this viewer go (its link's time is up, or it sent too much): say why, and stay away
      stopTimers();
      teardown();
      show("failed", message.message, true);
    }
    // other types are for newer consoles
  }

  async function connect() {
    if (state.transport === "websocket") return connectWebSocket();
    stopTimers();
    show("connecting", "connecting…");
    const attempt = (whep = new WhepClient(`/whep/${encodeURIComponent(sessionId)}${route}`, token));
    const pc = (state.pc = new RTCPeerConnection());
    const channel = (state.channel = pc.createDataChannel("input", { ordered: true }));
    const current = () => state.pc === pc;
    const { receiver } = addVideoTransceiver(pc);
    // the VM's sound, where the session has it, and this viewer's microphone, where its link may send one (the
    // server answers sendonly otherwise, and the browser sends nothing before the microphone is turned on)
    const sound = pc.addTransceiver("audio", { direction: "sendrecv" });
    microphone.use({ sender: sound.sender });
    channel.onmessage = (event) => current() && receive(event.data);
    channel.onclose = () => current() && retry(new Error("the input channel closed"));
    pc.ontrack = (event) => {
      if (event.track.kind === "audio") {
        speaker.attach(event.track);
        return;
      }
      video.srcObject = event.streams[0] || new MediaStream([event.track]);
    };
    pc.onconnectionstatechange = () => {
      if (!current()) return;
      if (pc.connectionState === "connected") {
        clearTimeout(connectTimer);
        backoff = BACKOFF_START_MS;
        showSource();
      } else if (pc.connectionState === "failed" || pc.connectionState === "closed") {
        retry(new Error(`connection ${pc.connectionState}`));
      }
    };
    connectTimer = setTimeout(() => current() && retry(new Error("timed out connecting")), CONNECT_TIMEOUT_MS);
    if (transport === "auto" && canDecode()) {
      // WebRTC that cannot get through (no UDP out, and no TURN) gives way to the WebSocket, for good
      setTimeout(() => {
        if (!current() || pc.connectionState === "connected") return;
        state.transport = "websocket";
        stopTimers();
        teardown();
        connectWebSocket();
      }, WEBRTC_GRACE_MS);
    }
    try {
      // the old viewer must be gone first: the server may count it against the session's max_viewers
      await leaving;
      // the offer is made while the ICE servers are asked for; gathering starts only once it is applied
      const [iceServers, offer] = await Promise.all([attempt.iceServers(), pc.createOffer()]);
      pc.setConfiguration({ iceServers });
      const answer = await attempt.connect(pc, offer);
      state.video = !/^m=video 0 /m.test(answer);
      // the server sends each frame's capture time only where the browser took the extension
      if (current()) delay.watch(rtpCaptureTime(receiver), answer.includes(ABS_CAPTURE_TIME) ? null : NO_CAPTURE_TIME);
      if (pc.connectionState === "connected" && current()) showSource();
    } catch (error) {
      // an attempt given up on meanwhile fails too; only the current one's failure matters
      if (current()) retry(error);
    }
  }

  /** The WebSocket transport: the same session, its packets decoded by WebCodecs (web/wsclient.js). */
  async function connectWebSocket() {
    stopTimers();
    show("connecting", "connecting…");
    const handlers = {
      onText: (data) => current() && receive(data),
      onClose: (code, reason) => current() && lost(code, reason),
    };
    const client = new WebSocketClient(sessionId, token, handlers, route);
    state.socket = client;
    state.channel = client.channel;
    const current = () => state.socket === client;
    connectTimer = setTimeout(() => current() && retry(new Error("timed out connecting")), CONNECT_TIMEOUT_MS);
    try {
      await leaving;
      await client.connect();
      if (!current()) return;
      clearTimeout(connectTimer);
      backoff = BACKOFF_START_MS;
      video.srcObject = client.stream;
      delay.watch(() => client.capturedOf());
      if (client.sound) speaker.attach(client.sound.track, client.sound);
      microphone.use({ socket: client.socket });
      showSource();
    } catch (error) {
      if (current() && error instanceof WebSocketClosed) lost(error.code, error.reason);
      else if (current()) retry(error);
    }
  }

  /** The WebSocket closed: for good where the server said why (a token that does not do), else try again. */
  function lost(code, reason) {
    if (PERMANENT_CLOSE_CODES.has(code)) {
      stopTimers();
      teardown();
      show("failed", refusal(code - 4000, reason || `closed (${code})`, sessionId), true);
      return;
    }
    retry(new Error(reason || `the WebSocket closed (${code})`));
  }

  document.getElementById("keys").addEventListener("change", (event) => {
    if (event.target.value) input.combo(event.target.value.split("+"));
    event.target.value = "";
    stage.focus();
  });
  document.getElementById("keyboard").addEventListener("click", () => touch.showKeyboard());
  const typeDialog = document.getElementById("type-text");
  document.getElementById("type-text-open").addEventListener("click", () => typeDialog.showModal());
  typeDialog.addEventListener("close", async () => {
    const field = document.getElementById("type-text-value");
    if (typeDialog.returnValue === "type") await typeText(field.value, press);
    field.value = "";
    stage.focus();
  });
  document.getElementById("stats-toggle").addEventListener("click", (event) => {
    overlay.toggle(() => {
      const { pc, socket } = state;
      if (pc) return { key: pc, counters: () => webrtcCounters(pc) };
      return socket && { key: socket, counters: async () => socket.counters() };
    });
    event.currentTarget.setAttribute("aria-pressed", String(overlay.visible));
  });
  fullscreenButton.addEventListener("click", async () => {
    try {
      if (document.fullscreenElement) {
        await document.exitFullscreen();
        return;
      }
      await root.requestFullscreen();
      // in fullscreen, keys the browser would take (Escape, Alt+Tab, …) may reach the VM
      await navigator.keyboard?.lock?.().catch(() => {});
      stage.focus();
    } catch (error) {
      status.textContent = `fullscreen: ${error.message}`;
    }
  });
  document.addEventListener("fullscreenchange", () => {
    const full = Boolean(document.fullscreenElement);
    fullscreenButton.textContent = full ? "Exit fullscreen" : "Fullscreen";
    if (!full) navigator.keyboard?.unlock?.();
  });
  addEventListener("pagehide", () => {
    stopTimers();
    teardown();
    show("closed");
  });
  // back from the back/forward cache: the connection was closed on the way in
  addEventListener("pageshow", (event) => event.persisted && connect());
  connect();
}
