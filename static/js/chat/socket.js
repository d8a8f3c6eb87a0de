/* The socket to /ws/chat/: reconnects with exponential backoff and jitter, and falls back to
 * polling the JSON status every 5 s when WebSockets cannot connect at all (blocked networks). */

import { $, S, fmt, request } from "./util.js";
import { seat, applyStatus, resetVersion, sessionEnded } from "./queue.js";

const app = $("chat-app");
const conn = $("conn-state");
const POLL_MS = 5000;
const BACKOFF_BASE_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const FAILED_OPENS_BEFORE_POLLING = 2;

let ws = null;
let attempts = 0;
let failedOpens = 0;
let pollTimer = null;
let reconnectTimer = null;
let handler = () => {};

export function setConn(text) { conn.textContent = text; }

export function isPolling() { return pollTimer !== null; }

/** Sends a frame; false when no socket is open (the caller tells the person). */
export function sendFrame(frame) {
  if (ws && ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify(frame));
    return true;
  }
  return false;
}

export function start(onFrame) {
  handler = onFrame;
  connect();
}

function connect() {
  if (seat.ended) return;
  let opened = false;
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  try {
    ws = new WebSocket(scheme + location.host + app.dataset.wsPath);
  } catch (e) {
    ws = null;
    failedOpens += 1;
    scheduleReconnect();
    return;
  }
  ws.onopen = () => {
    opened = true;
    attempts = 0;
    failedOpens = 0;
    resetVersion();  // resync from the first queue.status of this connection
    stopPolling();
    setConn("");
    app.dataset.conn = "live";
  };
  ws.onmessage = (event) => {
    let frame;
    try { frame = JSON.parse(event.data); } catch (e) { return; }
    handler(frame);
  };
  ws.onclose = (event) => {
    ws = null;
    app.dataset.conn = "closed";
    if (seat.ended || event.code === 4000) return;
    if (event.code === 4401) { location.href = app.dataset.loginUrl; return; }
    if (!opened) failedOpens += 1;
    if (failedOpens >= FAILED_OPENS_BEFORE_POLLING) startPolling();
    scheduleReconnect();
  };
}

function scheduleReconnect() {
  if (seat.ended || reconnectTimer) return;
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, attempts));
  const delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2);  // jitter: no herds
  attempts += 1;
  if (!pollTimer) setConn(fmt(S.reconnecting, { seconds: Math.ceil(delay / 1000) }));
  reconnectTimer = setTimeout(() => { reconnectTimer = null; connect(); }, delay);
}

function startPolling() {
  if (pollTimer || seat.ended) return;
  setConn(S.polling);
  app.dataset.conn = "polling";
  request("POST", app.dataset.sessionUrl).then(applyStatus, () => setConn(S.unavailable));
  pollTimer = setInterval(poll, POLL_MS);
}

function poll() {
  request("GET", app.dataset.statusUrl).then((status) => {
    setConn(S.polling);
    if (status.state === "closed" || status.state === "none") {
      if (seat.state === "queued" || seat.state === "active") {
        stopPolling();
        sessionEnded("abandoned");
      }
      return;
    }
    applyStatus(status);
  }, (error) => {
    if (error.status === 401) location.href = app.dataset.loginUrl;
    else setConn(S.unavailable);
  });
}

export function stopPolling() {
  if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
}
