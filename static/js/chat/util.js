/* Small helpers every chat module shares: the page's sentences, placeholders, plurals, CSRF and
 * JSON requests. The sentences come translated from the server (a json_script block), so the
 * page needs no JavaScript catalogue. */

export const S = JSON.parse(document.getElementById("chat-strings").textContent);

export const $ = (id) => document.getElementById(id);

/** Fills %(name)s placeholders, the form Django's catalogue uses. */
export function fmt(text, values) {
  return String(text === undefined ? "" : text).replace(/%\((\w+)\)s/g, (_, key) =>
    values && values[key] !== undefined && values[key] !== null ? values[key] : "");
}

/** The singular or plural sentence for n: the server sends key_one and key_other (ngettext),
 * so "1 second" never becomes "1 seconds". */
export function plural(key, n, values) {
  const text = n === 1 ? S[key + "_one"] : S[key + "_other"];
  return fmt(text, Object.assign({ n: n }, values || {}));
}

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export class RequestError extends Error {
  constructor(status, code, message) {
    super(message || code || String(status));
    this.status = status;
    this.code = code;
  }
}

/** A JSON request with the session cookie and CSRF token; JSON errors become RequestError. */
export async function request(method, url, body) {
  const options = {
    method: method,
    credentials: "same-origin",
    headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
  };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new RequestError(response.status, error.code, error.message);
  }
  return data;
}

export function reducedMotion() {
  return window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
}

/** A new element with a class and text (never HTML). */
export function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

export function newClientId() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return "c" + Date.now().toString(36) + Math.random().toString(36).slice(2);
}

/** Copies text; the Clipboard API needs a secure context, so fall back to a hidden textarea. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try { await navigator.clipboard.writeText(text); return true; } catch (e) { /* fall back */ }
  }
  const area = make("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
  area.remove();
  return ok;
}

/** A confirmation in the page's own dialog (testable, styled, translated). */
export function confirmDialog(text, okLabel) {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel || S.ok;
  return new Promise((resolve) => {
    const done = () => {
      dialog.removeEventListener("close", done);
      resolve(dialog.returnValue === "ok");
    };
    dialog.returnValue = "";
    dialog.addEventListener("close", done);
    dialog.showModal();
  });
}
