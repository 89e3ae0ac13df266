/**
 * A WHEP client (draft-ietf-wish-whep): ICE servers from the endpoint's Link headers, one POST of
 * a complete offer (we wait for ICE gathering instead of trickling), DELETE to leave.
 */

const GATHER_TIMEOUT_MS = 2000;

/** An HTTP error from the WHEP endpoint, with the server's JSON message and Retry-After. */
export class WhepError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/**
 * Parse `Link: <url>; rel="ice-server"; username="u"; credential="c"` headers (fetch joins
 * several into one, comma-separated) into RTCIceServer dictionaries.
 * @param {string|null} header
 * @returns {RTCIceServer[]}
 */
export function parseIceServers(header) {
  const servers = [];
  for (const match of (header || "").matchAll(/<([^>]*)>((?:\s*;\s*[\w-]+\s*=\s*(?:"[^"]*"|[^;,]*))*)/g)) {
    const params = {};
    for (const [, key, quoted, bare] of match[2].matchAll(/;\s*([\w-]+)\s*=\s*(?:"([^"]*)"|([^;,]*))/g)) {
      params[key.toLowerCase()] = quoted ?? bare.trim();
    }
    if (params.rel !== "ice-server") continue;
    const server = { urls: match[1] };
    if (params.username !== undefined) server.username = params.username;
    if (params.credential !== undefined) server.credential = params.credential;
    servers.push(server);
  }
  return servers;
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    message = (await response.json()).error.message || message;
  } catch {
    // not our JSON error body: keep the status line
  }
  const retry = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  return new WhepError(response.status, message, Number.isFinite(retry) ? retry : null);
}

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, GATHER_TIMEOUT_MS);
  });
}

/** One viewer resource on a WHEP endpoint. */
export class WhepClient {
  /**
   * @param {string} endpoint the WHEP endpoint URL, e.g. /whep/default
   * @param {string|null} token a viewer (or operator) token, sent as a Bearer token
   */
  constructor(endpoint, token) {
    this.endpoint = new URL(endpoint, location.href);
    this.headers = token ? { Authorization: `Bearer ${token}` } : {};
    this.location = null;
  }

  /** The ICE servers the endpoint announces (OPTIONS); none when it announces none. */
  async iceServers() {
    const response = await fetch(this.endpoint, { method: "OPTIONS", headers: this.headers });
    if (!response.ok) throw await errorOf(response);
    return parseIceServers(response.headers.get("Link"));
  }

  /** Offer what `pc` wants to receive, apply the answer; the resource URL is kept for close(). */
  async connect(pc) {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const response = await fetch(this.endpoint, {
      method: "POST",
      headers: { ...this.headers, "Content-Type": "application/sdp" },
      body: pc.localDescription.sdp,
    });
    if (response.status !== 201) throw await errorOf(response);
    this.location = new URL(response.headers.get("Location"), this.endpoint);
    await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  }

  /** Leave: DELETE the resource (keepalive, so it also works while the page unloads). */
  close() {
    if (!this.location) return;
    fetch(this.location, { method: "DELETE", headers: this.headers, keepalive: true }).catch(() => {});
    this.location = null;
  }
}
