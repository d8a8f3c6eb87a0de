/* Attaching a file to a question: the attach button, drag and drop onto the conversation, and
 * pasting an image into the box. One file waits in a tray above the box (a preview for an
 * image); Send uploads it with the question through POST /api/chat/sessions/<id>/files, with
 * the upload's progress shown, and the server asks the question exactly as the socket would
 * (the `message` frame, with the file, comes back through the socket). The server decides what
 * is accepted; the checks here only spare a person a long upload that would be refused.
 * Refusals are shown next to the box, in the page's language. */

import { $, S, fmt, make, csrfToken } from "./util.js";
import { formatSize } from "./files.js";

const app = $("chat-app");
const el = {
  button: $("attach-btn"), input: $("attach-input"), tray: $("attach-tray"),
  error: $("attach-error"), progress: $("attach-progress"), drop: $("chat-drop"),
  area: document.querySelector(".chat"), box: $("chat-input"),
};
const TYPES = {
  "image/jpeg": [".jpg", ".jpeg"], "image/png": [".png"], "image/webp": [".webp"],
  "application/pdf": [".pdf"], "text/plain": [".txt", ".md"],
};
const EXTENSIONS = Object.values(TYPES).flat();

export const attach = {
  file: null,
  preview: null,  // an object URL for an image's preview
  busy: false,
  enabled: false,
  /** Set by main.js: resolves to the open conversation's id, creating one when there is none. */
  conversation: async () => null,
};

function maxBytes() { return Number(app.dataset.maxUpload) || 10 * 1024 * 1024; }

function extension(name) {
  const dot = (name || "").lastIndexOf(".");
  return dot > 0 ? name.slice(dot).toLowerCase() : "";
}

export function showRefusal(text) {
  el.error.textContent = text;
  el.error.hidden = false;
}

function clearRefusal() { el.error.hidden = true; el.error.textContent = ""; }

/** The one file waiting to go with the next question (null: none). */
export function staged() { return attach.file; }

function renderTray() {
  el.tray.replaceChildren();
  el.tray.hidden = !attach.file;
  if (!attach.file) return;
  const file = attach.file;
  const chip = make("div", "attach-chip");
  if (attach.preview) {
    const img = make("img", "attach-preview");
    img.src = attach.preview;
    img.alt = file.name;
    chip.appendChild(img);
  } else {
    chip.appendChild(make("span", "file-chip-icon", extension(file.name) === ".pdf" ? "PDF" : "TXT"));
  }
  chip.append(make("span", "file-chip-name", file.name), make("span", "file-chip-size", formatSize(file.size)));
  const remove = make("button", "linklike attach-remove", "×");
  remove.type = "button";
  remove.setAttribute("aria-label", S.attach_remove);
  remove.title = S.attach_remove;
  remove.disabled = attach.busy;
  remove.addEventListener("click", () => { unstage(); el.box.focus(); });
  chip.appendChild(remove);
  el.tray.appendChild(chip);
}

export function unstage() {
  if (attach.preview) URL.revokeObjectURL(attach.preview);
  attach.file = null;
  attach.preview = null;
  el.input.value = "";
  renderTray();
}

/** Puts a file in the tray after the checks a page can make; says why when it cannot. */
export function stage(file) {
  if (!file) return false;
  if (!attach.enabled) return false;
  if (attach.busy) { showRefusal(S.attach_one); return false; }
  clearRefusal();
  if (!EXTENSIONS.includes(extension(file.name))) { showRefusal(S.attach_type); return false; }
  if (file.size > maxBytes()) {
    showRefusal(fmt(S.attach_too_large, { size: formatSize(maxBytes()) }));
    return false;
  }
  unstage();
  attach.file = file;
  if (file.type.startsWith("image/")) attach.preview = URL.createObjectURL(file);
  renderTray();
  return true;
}

function setProgress(percent) {
  el.progress.hidden = percent === null;
  if (percent === null) return;
  el.progress.value = percent;
  el.progress.textContent = percent + "%";
  const label = percent >= 100 ? S.attach_processing : fmt(S.attach_uploading, { percent: percent + "%" });
  el.progress.setAttribute("aria-label", label);
  el.progress.title = label;
  $("attach-progress-text").textContent = label;
  $("attach-progress-text").hidden = false;
}

function endProgress() {
  setProgress(null);
  $("attach-progress-text").hidden = true;
}

/** Uploads the staged file with the question; resolves true once the server recorded it. */
export async function send(text, clientId) {
  const file = attach.file;
  if (!file || attach.busy) return false;
  attach.busy = true;
  renderTray();
  clearRefusal();
  try {
    const conversation = await attach.conversation();
    const form = new FormData();
    form.append("file", file, file.name);
    // A question needs some text: the file's name stands in for an empty box.
    form.append("message", text.trim() ? text : file.name);
    form.append("client_id", clientId);
    const result = await upload(app.dataset.apiUrl + encodeURIComponent(conversation) + "/files", form);
    if (result.ok) { unstage(); return true; }
    showRefusal(result.message || S.attach_failed);
    return false;
  } catch (e) {
    showRefusal(S.attach_failed);
    return false;
  } finally {
    attach.busy = false;
    endProgress();
    renderTray();
  }
}

/** XMLHttpRequest, not fetch: only it reports the upload's progress. */
function upload(url, form) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) setProgress(Math.floor((event.loaded / event.total) * 100));
    });
    xhr.addEventListener("load", () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch (e) { data = null; }
      if (xhr.status === 201) { resolve({ ok: true, data: data }); return; }
      const error = (data && data.error) || {};
      resolve({ ok: false, status: xhr.status, code: error.code, message: error.message });
    });
    xhr.addEventListener("error", () => resolve({ ok: false, message: S.attach_failed }));
    setProgress(0);
    xhr.send(form);
  });
}

export function setAttachEnabled(on) {
  attach.enabled = on;
  el.button.disabled = !on;
}

// --- the three ways in ----------------------------------------------------------------------

el.button.addEventListener("click", () => el.input.click());
el.input.addEventListener("change", () => {
  if (el.input.files && el.input.files[0]) stage(el.input.files[0]);
  el.box.focus();
});

el.box.addEventListener("paste", (event) => {
  const items = event.clipboardData ? Array.from(event.clipboardData.files || []) : [];
  if (!items.length) return;  // pasting text stays pasting text
  event.preventDefault();
  const file = items[0];
  // A pasted screenshot is often named "image.png"; keep whatever name the browser gives.
  stage(file);
});

let dragDepth = 0;
function hasFiles(event) {
  return event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files");
}
el.area.addEventListener("dragenter", (event) => {
  if (!hasFiles(event) || !attach.enabled) return;
  event.preventDefault();
  dragDepth += 1;
  el.drop.hidden = false;
});
el.area.addEventListener("dragover", (event) => {
  if (!hasFiles(event) || !attach.enabled) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = "copy";
});
el.area.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) el.drop.hidden = true;
});
el.area.addEventListener("drop", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  dragDepth = 0;
  el.drop.hidden = true;
  const file = event.dataTransfer.files && event.dataTransfer.files[0];
  if (file) { stage(file); el.box.focus(); }
});

el.tray.hidden = true;
