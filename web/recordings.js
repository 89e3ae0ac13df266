/** Recordings in the session list: a badge on sessions being recorded, and their recordings to play. */

import { errorOf } from "./http.js";

/**
 * What goes beside a session's name in the list: a REC badge while it records, and a link to its recordings.
 * @param {object} session the session as the API lists it
 * @param {() => void} open shows the session's recordings
 * @returns {HTMLElement[]}
 */
export function recordingMarks(session, open) {
  const marks = [];
  if (session.recordings > 0) {
    const badge = document.createElement("span");
    badge.className = "badge recording";
    badge.textContent = "● REC";
    badge.title = `${session.recordings} recording${session.recordings === 1 ? "" : "s"} running`;
    marks.push(badge);
  }
  const link = document.createElement("a");
  link.className = "recordings-link";
  link.href = `#recordings=${encodeURIComponent(session.id)}`;
  link.textContent = "recordings";
  link.addEventListener("click", (event) => {
    event.preventDefault();
    open();
  });
  marks.push(link);
  return marks;
}

function size(bytes) {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : `${Math.ceil(bytes / 1024)} KiB`;
}

/**
 * Fill `panel` with the recordings of `session`, headed by its name; each plays in the panel's player from its
 * signed file link (a <video> cannot send a token), streamed and seekable with Range requests.
 * @param {HTMLElement} panel the #recordings element
 * @param {{id: string, name?: string}} session the session as the API lists it
 * @param {string|null} token operator token
 */
export async function showRecordings(panel, session, token) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const table = panel.querySelector("tbody");
  const status = panel.querySelector(".status");
  const player = panel.querySelector("video");
  panel.hidden = false;
  const heading = panel.querySelector(".session");
  heading.textContent = session.name || session.id;
  heading.title = session.name ? `session ${session.id}` : "";
  const response = await fetch(`/api/v1/sessions/${encodeURIComponent(session.id)}/recordings`, { headers });
  if (!response.ok) {
    status.textContent = `cannot list recordings: ${(await errorOf(response)).message}`;
    return;
  }
  const { recordings } = await response.json();
  status.textContent = recordings.length ? "" : "no recordings";
  table.replaceChildren();
  for (const recording of recordings) {
    const row = table.insertRow();
    row.dataset.recording = recording.id;
    const started = new Date(recording.started_at).toLocaleString();
    for (const text of [started, recording.label || "–", recording.state, `${recording.duration.toFixed(1)} s`,
      size(recording.bytes)]) {
      row.insertCell().textContent = text;
    }
    const play = document.createElement("a");
    play.href = recording.file;
    play.textContent = "play";
    play.addEventListener("click", async (event) => {
      event.preventDefault();
      player.src = recording.file_link;
      player.dataset.recording = recording.id;
      player.hidden = false;
      try {
        await player.play();
      } catch (error) {
        status.textContent = `cannot play the recording: ${error.message} (list the recordings again for a new link)`;
      }
    });
    row.insertCell().append(play);
  }
}
