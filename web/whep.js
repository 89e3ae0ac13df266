/**
 * A WHEP client (draft-ietf-wish-whep): ICE servers from the endpoint's Link headers, the offer POSTed
 * at once (candidates gathered after it follow in one PATCH, trickle ICE), DELETE to leave.
 *
 * The offer does not wait for ICE gathering: a browser with its default settings hides its host
 * addresses behind mDNS names that no server can resolve, so its candidates add nothing to the answer;
 * the server's candidates in the answer are what the browser's connectivity checks go to, and the server
 * learns the browser's address from those checks.
 */

import { errorOf } from "./http.js";

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

/**
 * The candidates `pc` gathers from now on, as an SDP fragment (RFC 8840) for a trickle PATCH, once its
 * gathering is complete; null when it gathered none.
 * @param {RTCPeerConnection} pc
 * @returns {Promise<string|null>}
 */
function laterCandidates(pc) {
  const lines = [];
  return new Promise((resolve) => {
    const gathered = (event) => {
      const { candidate } = event;
      if (candidate?.candidate) {
        lines.push(`a=mid:${candidate.sdpMid}`, `a=${candidate.candidate}`);
        return;
      }
      if (candidate !== null && pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icecandidate", gathered);
      resolve(lines.length ? [...lines, "a=end-of-candidates", ""].join("\r\n") : null);
    };
    pc.addEventListener("icecandidate", gathered);
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
   * Offer what `pc` wants to receive and apply the answer; returns the answer. The resource URL is kept
   * for close(); when close() came first (the console gave up on this attempt meanwhile) the new
   * resource is deleted at once, so that no viewer is left behind on the server.
   * @param {RTCPeerConnection} pc
   * @param {RTCSessionDescriptionInit} offer from pc.createOffer()
   * @returns {Promise<string>} the answer's SDP
   */
  async connect(pc, offer) {
    const trickled = laterCandidates(pc);
    await pc.setLocalDescription(offer);
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
    const answer = await response.text();
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
    trickled.then((fragment) => fragment && this.trickle(fragment));
    return answer;
  }

  /**
   * Send candidates gathered after the offer (trickle ICE). Best effort: the server learns the browser's
   * addresses from its connectivity checks anyway.
   * @param {string} fragment an SDP fragment of candidates
   */
  async trickle(fragment) {
    const resource = this.location;
    if (!resource) return;
    const headers = { ...this.headers, "Content-Type": "application/trickle-ice-sdpfrag" };
    await fetch(resource, { method: "PATCH", headers, body: fragment }).catch(() => {});
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
