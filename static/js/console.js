// The staff console's live updates: one WebSocket (/ws/console/) carrying server-rendered
// fragments; each frame replaces whole sections, so a missed frame is healed by the next one.
// Reconnects with exponential backoff and jitter; while WebSockets fail, polls live.json.
(function () {
  "use strict";
  const root = document.getElementById("console");
  if (!root) return;
  const badge = document.getElementById("console-link-state");
  const POLL_MS = 5000;
  let socket = null;
  let attempts = 0;
  let pollTimer = null;

  function setState(state) {
    if (!badge) return;
    badge.dataset.state = state;
    badge.textContent = root.dataset["label" + state.charAt(0).toUpperCase() + state.slice(1)] || state;
  }

  function apply(frame) {
    if (frame && frame.type === "console.error") {  // Redis unreachable: say so, keep the last view
      setState("error");
      if (badge) badge.title = frame.message || "";
      return;
    }
    if (frame && frame.type === "console.poll") {  // a fragment too large for a frame: fetch it
      poll();
      return;
    }
    if (!frame || frame.type !== "console.update" || !frame.fragments) return;
    if (badge && badge.dataset.state === "error") setState(pollTimer ? "polling" : "live");
    for (const [name, html] of Object.entries(frame.fragments)) {
      const target = document.getElementById("console-" + name);
      if (target) target.innerHTML = html;  // server-rendered and escaped by Django templates
    }
    root.dataset.version = String(frame.version || "");
    document.dispatchEvent(new CustomEvent("console:updated", { detail: frame }));
  }

  async function poll() {
    try {
      const response = await fetch(root.dataset.liveUrl + window.location.search, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.ok) apply(await response.json());
      else if (response.status === 503) apply({ type: "console.error", message: "503" });
    } catch (err) { /* the next poll or the socket heals it */ }
  }

  function startPolling() {
    if (pollTimer) return;
    setState("polling");
    pollTimer = window.setInterval(poll, POLL_MS);
    poll();
  }

  function stopPolling() {
    if (pollTimer) window.clearInterval(pollTimer);
    pollTimer = null;
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    // The page's query (?endpoint=...) goes along, so live frames keep the charts' filter.
    socket = new WebSocket(scheme + window.location.host + root.dataset.wsPath + window.location.search);
    socket.addEventListener("message", function (event) {
      // Only a socket that delivers counts as working (one that opens and dies does not).
      attempts = 0;
      stopPolling();
      if (badge && badge.dataset.state !== "error") setState("live");
      try { apply(JSON.parse(event.data)); } catch (err) { /* ignore a malformed frame */ }
    });
    socket.addEventListener("close", function (event) {
      socket = null;
      if (event.code === 4403) { setState("reconnecting"); return; }  // not staff any more
      attempts += 1;
      if (attempts >= 3) startPolling(); else setState("reconnecting");
      const base = Math.min(30000, 500 * Math.pow(2, attempts));
      window.setTimeout(connect, base / 2 + Math.random() * base / 2);
    });
  }

  connect();
})();
