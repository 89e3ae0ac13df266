/** HTTP errors from the server's API and WHEP endpoints, which answer `{"error": {"code", "message"}}`. */

/** A failed response: status, the server's error code and message, and Retry-After in seconds. */
export class HttpError extends Error {
  /**
   * @param {number} status the HTTP status
   * @param {string} message the server's error message, else the status line
   * @param {string|null} code the server's error code, when it sent a JSON error body
   * @param {number|null} retryAfter seconds from the Retry-After header
   * @param {string|null} tokenError the Bearer token error of a 401 or 403 (RFC 6750's WWW-Authenticate
   *   error: invalid_token, insufficient_scope: a valid token of too small a scope, invalid_request)
   */
  constructor(status, message, code = null, retryAfter = null, tokenError = null) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.tokenError = tokenError;
  }
}

/**
 * The HttpError for a failed response, with the message from its JSON error body.
 * @param {Response} response
 * @returns {Promise<HttpError>}
 */
export async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`.trim();
  let code = null;
  try {
    const { error } = await response.json();
    message = error.message || message;
    code = error.code || null;
  } catch {
    // not our JSON error body (a proxy's page, say): the status line will do
  }
  const retryAfter = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  const tokenError = /error="([a-z_]+)"/.exec(response.headers.get("WWW-Authenticate") || "")?.[1] ?? null;
  return new HttpError(response.status, message, code, Number.isFinite(retryAfter) ? retryAfter : null, tokenError);
}
