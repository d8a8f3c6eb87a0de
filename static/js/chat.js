/* The chat page: queue banner, turn notice, streamed chat, reconnects and a polling fallback.
 *
 * Every position the server sends is absolute and versioned; the page keeps the newest version
 * it has seen and ignores older frames, and forgets that mark on every (re)connect so that the
 * first queue.status after a reconnect always resyncs the page. Plain JS, no dependencies.
 */
(function () {
  "use strict";

  var app = document.getElementById("chat-app");
  if (!app) return;
  var S = JSON.parse(document.getElementById("chat-strings").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var el = {
    banner: $("queue-banner"), title: $("banner-title"), detail: $("banner-detail"),
    notify: $("notify-btn"), staff: $("staff-banner"), notice: $("notice"),
    noticeText: $("notice-text"), keep: $("keep-btn"), rejoin: $("rejoin-btn"),
    conn: $("conn-state"), messages: $("messages"), statusLine: $("status-line"),
    error: $("chat-error"), form: $("composer"), input: $("chat-input"),
    send: $("send-btn"), stop: $("stop-btn"), leave: $("leave-btn")
  };

  var POLL_MS = 5000;
  var BACKOFF_BASE_MS = 1000;
  var BACKOFF_MAX_MS = 30000;
  var FAILED_OPENS_BEFORE_POLLING = 2;

  var ws = null;
  var attempts = 0;          // reconnect attempts since the last successful open
  var failedOpens = 0;       // connections that never opened (WebSockets blocked?)
  var lastVersion = -1;
  var state = null;          // "queued" | "active" | "closed" | "none" | null (not yet known)
  var ended = false;
  var pollTimer = null;
  var reconnectTimer = null;
  var countdownTimer = null;
  var streaming = null;      // {id, textEl}
  var typingSentAt = 0;
  var errorTimer = null;

  function fmt(text, values) {
    return String(text).replace(/%\((\w+)\)s/g, function (_, key) {
      return values && values[key] !== undefined ? values[key] : "";
    });
  }

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  // --- the banner ------------------------------------------------------------------------

  function etaText(seconds) {
    if (seconds === null || seconds === undefined) return S.eta_unknown;
    var minutes = Math.max(1, Math.ceil(seconds / 60));
    return minutes === 1 ? S.eta_one : fmt(S.eta_other, { minutes: minutes });
  }

  function setBanner(kind, title, detail) {
    el.banner.dataset.state = kind;
    el.banner.classList.add("shown");
    if (el.title.textContent !== title) el.title.textContent = title;
    if (el.detail.textContent !== detail) el.detail.textContent = detail;
  }

  function setChatEnabled(on) {
    el.input.disabled = !on;
    el.send.disabled = !on;
  }

  function applyStatus(status) {
    if (typeof status.version === "number") {
      if (status.version < lastVersion) return;  // older than what the page shows
      lastVersion = status.version;
    }
    var previous = state;
    state = status.state;
    if (state === "queued") {
      var position = Math.max(1, status.position | 0);  // never 0 or negative on screen
      var ahead = Math.max(0, status.ahead | 0);
      var aheadText = ahead === 0 ? S.ahead_zero
        : fmt(ahead === 1 ? S.ahead_one : S.ahead_other, { ahead: ahead });
      setBanner("queued", fmt(S.queued_title, { position: position }) + " — " + etaText(status.eta_seconds), aheadText);
      document.title = fmt(S.title_queue, { position: position });
      setChatEnabled(false);
      showNotifyButton();
    } else if (state === "active") {
      setChatEnabled(true);
      el.notify.hidden = true;
      if (previous === "queued") {
        yourTurn();
      } else if (el.banner.dataset.state !== "turn") {
        el.banner.dataset.state = "active";
        el.banner.classList.remove("shown");
        document.title = S.active_title;
      }
    } else if (state === "closed" || state === "none") {
      setChatEnabled(false);
    }
  }

  function yourTurn() {
    setBanner("turn", S.your_turn, S.your_turn_detail);
    document.title = S.title_turn;
    setChatEnabled(true);
    if ("Notification" in window && Notification.permission === "granted" && document.hidden) {
      try { new Notification(S.your_turn, { body: S.notification_body, tag: "chatgate-turn" }); }
      catch (e) { /* some browsers only allow notifications from a service worker */ }
    }
    el.input.focus({ preventScroll: true });
  }

  function showNotifyButton() {
    el.notify.hidden = !("Notification" in window) || Notification.permission !== "default";
  }

  el.notify.addEventListener("click", function () {
    if (!("Notification" in window)) return;
    Notification.requestPermission().then(showNotifyButton, showNotifyButton);
  });

  // --- notices ---------------------------------------------------------------------------

  function showNotice(text, kind) {
    el.notice.hidden = false;
    el.notice.dataset.kind = kind;
    el.noticeText.textContent = text;
    el.keep.hidden = kind !== "expiring";
    el.rejoin.hidden = kind !== "ended";
  }

  function hideNotice() {
    el.notice.hidden = true;
    if (countdownTimer) { clearInterval(countdownTimer); countdownTimer = null; }
  }

  function expiring(seconds) {
    var left = Math.max(0, seconds | 0);
    showNotice(fmt(S.expiring, { seconds: left }), "expiring");
    if (countdownTimer) clearInterval(countdownTimer);
    countdownTimer = setInterval(function () {
      left = Math.max(0, left - 1);
      el.noticeText.textContent = fmt(S.expiring, { seconds: left });
      if (left === 0) { clearInterval(countdownTimer); countdownTimer = null; }
    }, 1000);
  }

  function sessionEnded(reason) {
    ended = true;
    state = "closed";
    stopPolling();
    finishStream("cancelled");
    setChatEnabled(false);
    el.notify.hidden = true;
    hideNotice();
    var words = S["reason_" + reason] || reason;
    showNotice(fmt(S.ended, { reason: words }), "ended");
    // The notice (role="alert") says it; the banner steps aside rather than repeat it.
    el.banner.dataset.state = "ended";
    el.banner.classList.remove("shown");
    document.title = S.ended_title;
    el.rejoin.focus();
  }

  function showError(text) {
    el.error.textContent = text;
    el.error.hidden = false;
    if (errorTimer) clearTimeout(errorTimer);
    errorTimer = setTimeout(function () { el.error.hidden = true; }, 8000);
  }

  function setConn(text) { el.conn.textContent = text; }

  // --- messages --------------------------------------------------------------------------

  function addMessage(id, role, content) {
    if (id !== undefined && id !== null &&
        el.messages.querySelector('li[data-id="' + id + '"]')) {
      return el.messages.querySelector('li[data-id="' + id + '"] .text');
    }
    var li = document.createElement("li");
    li.className = "msg msg-" + role;
    if (id !== undefined && id !== null) li.dataset.id = id;
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? S.you : S.assistant;
    var text = document.createElement("span");
    text.className = "text";
    text.textContent = content || "";
    li.appendChild(who);
    li.appendChild(text);
    el.messages.appendChild(li);
    li.scrollIntoView({ block: "end", behavior: reducedMotion() ? "auto" : "smooth" });
    return text;
  }

  function reducedMotion() {
    return window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  }

  function finishStream(status) {
    if (!streaming) return;
    var li = streaming.textEl.parentNode;
    li.classList.remove("streaming");
    li.removeAttribute("aria-busy");
    if (status === "cancelled" || status === "failed") {
      li.classList.add("msg-" + status);
      var tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = status === "cancelled" ? S.stopped : S.failed;
      li.appendChild(tag);
    }
    streaming = null;
    el.stop.hidden = true;
    el.statusLine.textContent = "";
  }

  // --- frames from the server ------------------------------------------------------------

  function handle(frame) {
    switch (frame.type) {
      case "queue.status":
        applyStatus(frame);
        break;
      case "session.activated":
        if (state !== "active") { state = "queued"; applyStatus({ state: "active" }); }
        break;
      case "session.expiring":
        expiring(frame.seconds_left);
        break;
      case "session.closed":
        sessionEnded(frame.reason);
        break;
      case "banner.changed":
        el.staff.textContent = frame.message || "";
        el.staff.hidden = !frame.message;
        break;
      case "message":
        addMessage(frame.message_id, frame.role || "user", frame.content);
        break;
      case "stream_start":
        finishStream("done");
        var textEl = addMessage(frame.message_id, "assistant", "");
        textEl.parentNode.classList.add("streaming");
        textEl.parentNode.setAttribute("aria-busy", "true");
        streaming = { id: frame.message_id, textEl: textEl };
        el.stop.hidden = false;
        el.statusLine.textContent = S.assistant_writing;
        break;
      case "stream_chunk":
        if (streaming && streaming.id === frame.message_id) {
          streaming.textEl.textContent += frame.content;
        }
        break;
      case "stream_end":
        if (streaming && streaming.id === frame.message_id) finishStream(frame.status);
        break;
      case "system":
        if (frame.event === "waiting_for_capacity") {
          el.statusLine.textContent = fmt(S.waiting_slot, { place: frame.place });
        } else if (frame.event === "slot_lost") {
          showError(S.slot_lost);
        }
        break;
      case "error":
        onError(frame);
        break;
    }
  }

  function onError(frame) {
    var text = S["err_" + frame.code] || frame.message || frame.code;
    if (frame.code === "UNAVAILABLE") { setConn(S.unavailable); return; }
    if (frame.code === "CAPACITY_TIMEOUT") el.statusLine.textContent = "";
    showError(fmt(text, { seconds: frame.retry_after || "", message: frame.message || "" }));
  }

  // --- the socket, its reconnects, and the fallback --------------------------------------

  function connect() {
    if (ended) return;
    var opened = false;
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    try {
      ws = new WebSocket(scheme + location.host + app.dataset.wsPath);
    } catch (e) {
      ws = null;
      failedOpens += 1;
      scheduleReconnect();
      return;
    }
    ws.onopen = function () {
      opened = true;
      attempts = 0;
      failedOpens = 0;
      lastVersion = -1;  // resync from the first queue.status of this connection
      stopPolling();
      setConn("");
      app.dataset.conn = "live";
    };
    ws.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      handle(frame);
    };
    ws.onclose = function (event) {
      ws = null;
      app.dataset.conn = "closed";
      if (ended || event.code === 4000) return;
      if (event.code === 4401) { location.href = app.dataset.loginUrl; return; }
      if (!opened) failedOpens += 1;
      if (failedOpens >= FAILED_OPENS_BEFORE_POLLING) startPolling();
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    if (ended || reconnectTimer) return;
    var ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, attempts));
    var delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2);  // jitter: 50-100%
    attempts += 1;
    if (!pollTimer) setConn(fmt(S.reconnecting, { seconds: Math.ceil(delay / 1000) }));
    reconnectTimer = setTimeout(function () { reconnectTimer = null; connect(); }, delay);
  }

  function request(method, url) {
    return fetch(url, {
      method: method,
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), "Accept": "application/json" }
    }).then(function (response) {
      if (response.status === 401) { location.href = app.dataset.loginUrl; throw new Error("401"); }
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    });
  }

  function startPolling() {
    if (pollTimer || ended) return;
    setConn(S.polling);
    app.dataset.conn = "polling";
    var poll = function () {
      request("GET", app.dataset.statusUrl).then(function (status) {
        if (status.state === "closed" || status.state === "none") {
          if (state === "queued" || state === "active") sessionEnded("abandoned");
          return;
        }
        applyStatus(status);
      }).catch(function () { setConn(S.unavailable); });
    };
    request("POST", app.dataset.sessionUrl).then(applyStatus).catch(function () {
      setConn(S.unavailable);
    });
    pollTimer = setInterval(poll, POLL_MS);
  }

  function stopPolling() {
    if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
  }

  function sendFrame(frame) {
    if (ws && ws.readyState === WebSocket.OPEN) { ws.send(JSON.stringify(frame)); return true; }
    return false;
  }

  // --- the person's actions --------------------------------------------------------------

  el.form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = el.input.value;
    if (!text.trim() || el.input.disabled) return;
    if (sendFrame({ type: "message", content: text })) {
      el.input.value = "";
      if (el.banner.dataset.state === "turn") {  // seen and acted on: tuck the notice away
        el.banner.dataset.state = "active";
        el.banner.classList.remove("shown");
        document.title = S.active_title;
      }
      sendFrame({ type: "typing", is_typing: false });
      typingSentAt = 0;
    } else {
      showError(S.polling);
    }
  });

  el.input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      el.form.requestSubmit ? el.form.requestSubmit() : el.send.click();
    }
  });

  el.input.addEventListener("input", function () {
    var now = Date.now();
    if (now - typingSentAt > 3000) {
      typingSentAt = now;
      sendFrame({ type: "typing", is_typing: true });
    }
  });

  el.stop.addEventListener("click", function () {
    if (streaming) sendFrame({ type: "cancel", message_id: streaming.id });
    el.input.focus();
  });

  el.keep.addEventListener("click", function () {
    sendFrame({ type: "heartbeat", keep: true });
    hideNotice();
    el.input.focus();
  });

  el.rejoin.addEventListener("click", function () { location.reload(); });

  el.leave.addEventListener("click", function () {
    if (ended) return;
    if (!sendFrame({ type: "leave" })) {
      request("POST", app.dataset.leaveUrl).then(function () { sessionEnded("user"); })
        .catch(function () { setConn(S.unavailable); });
    }
  });

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && state === "active" && el.banner.dataset.state === "turn") {
      document.title = S.title_turn;
    }
  });

  connect();
})();
