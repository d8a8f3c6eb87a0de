/* The composer: Enter sends (never while a Hangul syllable is being composed), Shift+Enter is a
 * new line. The text stays in the box until the server has recorded it, so a refusal (rate
 * limit, no seat) never loses what the person wrote. */

import { $, S, fmt, plural, newClientId } from "./util.js";

const el = {
  form: $("composer"), input: $("chat-input"), send: $("send-btn"), stop: $("stop-btn"),
  status: $("status-line"), error: $("chat-error"),
};

// How long a sent message may wait for the server's echo before the box is usable again.
const PENDING_MS = 10000;

// A phone gets the short hint: it has no Enter/Shift+Enter keys to explain, and the long hint
// was cut after the box's two lines in Korean.
const phone = window.matchMedia("(max-width: 600px), (pointer: coarse)");
const longHint = el.input.placeholder;
function fitHint() {
  el.input.placeholder = phone.matches ? S.composer_short : longHint;
}
fitHint();
phone.addEventListener("change", fitHint);

export const composer = {
  enabled: false,
  pending: null,  // {clientId, text, timer}
  onSend: () => false,
  onStop: () => {},
  hasFile: () => false,  // a file waiting in the tray may go without text (attach.js)
};
let errorTimer = null;
let rateTimer = null;
let rateUntil = 0;
let composing = false;

export function setEnabled(on) {
  composer.enabled = on;
  el.input.disabled = !on;
  syncSend();
}

function syncSend() {
  el.send.disabled = !composer.enabled || composer.pending !== null || Date.now() < rateUntil;
}

export function showError(text, sticky) {
  el.error.textContent = text;
  el.error.hidden = false;
  if (errorTimer) clearTimeout(errorTimer);
  errorTimer = sticky ? null : setTimeout(() => { el.error.hidden = true; }, 8000);
}

export function clearError() {
  el.error.hidden = true;
  if (errorTimer) { clearTimeout(errorTimer); errorTimer = null; }
}

function clearPending() {
  if (composer.pending) clearTimeout(composer.pending.timer);
  composer.pending = null;
  syncSend();
}

/** The server recorded a question: if it is the one in the box, the box empties. */
export function recorded(frame) {
  const pending = composer.pending;
  if (!pending) return false;
  const mine = frame.client_id ? frame.client_id === pending.clientId
    : frame.content === pending.text;  // an older server does not echo client ids
  if (!mine) return false;
  if (el.input.value === pending.text) el.input.value = "";
  clearPending();
  return true;
}

const QUESTION_FRAMES = new Set(["message", "edit", "regenerate"]);

/** The server refused a question: the text stays; a rate limit says when it may go again. */
export function refused(frame) {
  if (frame.client_id && composer.pending && frame.client_id !== composer.pending.clientId) return;
  // A limit on another kind of frame (cancel, heartbeat, ...) is not about the question.
  if (frame.frame_type && !QUESTION_FRAMES.has(frame.frame_type)) return;
  clearPending();
  if (frame.code === "RATE_LIMIT") {
    let left = Math.max(1, Math.ceil(Number(frame.retry_after) || 1));
    rateUntil = Date.now() + left * 1000;
    syncSend();
    showError(plural("rate_limited", left, { seconds: left }), true);
    if (rateTimer) clearInterval(rateTimer);
    rateTimer = setInterval(() => {
      left -= 1;
      if (left <= 0) {
        clearInterval(rateTimer); rateTimer = null; rateUntil = 0;
        clearError(); syncSend();
        return;
      }
      el.error.textContent = plural("rate_limited", left, { seconds: left });
    }, 1000);
  }
}

export function ownsClientId(clientId) {
  return !!(composer.pending && clientId && composer.pending.clientId === clientId);
}

function submit() {
  const text = el.input.value;
  if ((!text.trim() && !composer.hasFile()) || !composer.enabled || composer.pending || Date.now() < rateUntil) return;
  const clientId = newClientId();
  composer.pending = { clientId: clientId, text: text,
    timer: setTimeout(clearPending, PENDING_MS) };
  syncSend();
  if (!composer.onSend(text, clientId)) clearPending();
}

el.form.addEventListener("submit", (event) => {
  event.preventDefault();
  submit();
});

el.input.addEventListener("compositionstart", () => { composing = true; });
el.input.addEventListener("compositionend", () => { composing = false; });

el.input.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || event.shiftKey) return;
  // An Enter that ends a Hangul syllable belongs to the IME: Chromium reports it with
  // isComposing (or keyCode 229). Sending then would send the text without its last syllable
  // and the syllable again after it.
  if (event.isComposing || event.keyCode === 229 || composing) return;
  event.preventDefault();
  submit();
});

el.stop.addEventListener("click", () => { composer.onStop(); el.input.focus(); });

export function setStreaming(on) {
  el.stop.hidden = !on;
  if (on) el.status.replaceChildren(S.assistant_writing);
  else if (!waitingShown) el.status.replaceChildren();
}

let waitingShown = false;

/** "Your question waits for a free answer" with a button to take it back. */
export function showWaiting(place, onCancel) {
  waitingShown = true;
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.id = "cancel-wait-btn";
  cancel.className = "linklike";
  cancel.textContent = S.cancel_question;
  cancel.addEventListener("click", onCancel);
  el.status.replaceChildren(fmt(S.waiting_answer, { place: place }) + " ", cancel);
}

export function hideWaiting() {
  if (!waitingShown) return;
  waitingShown = false;
  el.status.replaceChildren();
}

export function setMaxLength() {
  const max = Number($("chat-app").dataset.maxChars);
  if (max > 0) el.input.maxLength = max;
}

export const composerElements = el;
