/**
 * A WHEP client (draft-ietf-wish-whep): ICE servers from the endpoint's Link headers, one POST of
 * a complete offer (we wait for ICE gathering instead of trickling), DELETE to leave.
 */

import { errorOf } from "./http.js";

const GATHER_TIMEOUT_MS = 2000;
// a reconnect waits for the old resource's DELETE; a server that does not answer must not stall it
const DELETE_TIMEOUT_MS = 3000;

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

/** Resolves when `pc` has gathered its candidates, or after GATHER_TIMEOUT_MS (send what we have). */
function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", changed);
      resolve();
    };
    const changed = () => pc.iceGatheringState === "complete" && done();
    const timer = setTimeout(done, GATHER_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", changed);
  });
}

/** One viewer resource on a WHEP endpoint: connect() creates it, close() deletes it. */
export class WhepClient {
  /**
   * @param {string} endpoint the WHEP endpoint URL, e.g. /whep/default
   * @param {string|null} token a viewer (or operator) token, sent as a Bearer token when given
   */
  constructor(endpoint, token) {
    this.endpoint = new URL(endpoint, location.href);
    this.headers = token ? { Authorization: `Bearer ${token}` } : {};
    /** The viewer resource's URL once the server made it (the 201's Location). */
    this.location = null;
    this.closed = false;
  }

  /** The ICE servers the endpoint announces (OPTIONS); none when it announces none. */
  async iceServers() {
    const response = await fetch(this.endpoint, { method: "OPTIONS", headers: this.headers });
    if (!response.ok) throw await errorOf(response);
    return parseIceServers(response.headers.get("Link"));
  }

  /**
   * Offer what `pc` wants to receive and apply the answer. The resource URL is kept for close();
   * when close() came first (the console gave up on this attempt meanwhile) the new resource is
   * deleted at once, so that no viewer is left behind on the server.
   * @param {RTCPeerConnection} pc
   */
  async connect(pc) {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const response = await fetch(this.endpoint, {
      method: "POST",
      headers: { ...this.headers, "Content-Type": "application/sdp" },
      body: pc.localDescription.sdp,
    });
    if (response.status !== 201) throw await errorOf(response);
    const resource = response.headers.get("Location");
    if (resource) this.location = new URL(resource, this.endpoint);
    if (this.closed) {
      await this.close();
      throw new Error("closed while connecting");
    }
    await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  }

  /**
   * Leave: DELETE the resource (keepalive, so that it also goes out while the page unloads).
   * @returns {Promise<void>} settles when the server has answered, or after DELETE_TIMEOUT_MS; never rejects
   */
  async close() {
    this.closed = true;
    const resource = this.location;
    this.location = null;
    if (!resource) return;
    const signal = AbortSignal.timeout(DELETE_TIMEOUT_MS);
    await fetch(resource, { method: "DELETE", headers: this.headers, keepalive: true, signal }).catch(() => {});
  }
}
