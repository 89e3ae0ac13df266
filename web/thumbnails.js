/** Thumbnails in the session list: a small picture of each display, kept while it is unchanged. */

/** session id -> { etag, url } of the picture on show (an object URL of the JPEG). */
const pictures = new Map();

/**
 * A table cell's content for a session's thumbnail: the last picture at once, then the current one.
 * The browser revalidates with If-None-Match (the server answers no-cache + ETag), so an unchanged
 * picture costs a 304 and no new object URL.
 * @param {string} sessionId
 * @param {string|null} token operator token, sent as a Bearer token when given
 * @returns {HTMLImageElement}
 */
export function thumbnail(sessionId, token) {
  const image = document.createElement("img");
  image.className = "thumbnail";
  image.alt = "no picture";
  const known = pictures.get(sessionId);
  if (known) image.src = known.url;
  refresh(image, sessionId, token);
  return image;
}

async function refresh(image, sessionId, token) {
  const url = `/api/v1/sessions/${encodeURIComponent(sessionId)}/thumbnail`;
  let response;
  try {
    response = await fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  } catch {
    return; // the list says what is wrong with the server
  }
  const known = pictures.get(sessionId);
  if (!response.ok) {
    // 409: the source is lost or has shown nothing yet; the state column says which
    image.removeAttribute("src");
    if (known) URL.revokeObjectURL(known.url);
    pictures.delete(sessionId);
    return;
  }
  const etag = response.headers.get("ETag");
  if (known && known.etag === etag) {
    image.src = known.url;
    return;
  }
  const picture = { etag, url: URL.createObjectURL(await response.blob()) };
  pictures.set(sessionId, picture);
  image.src = picture.url;
  if (known) URL.revokeObjectURL(known.url);
}
