/* The seat: the queue banner (place, wait, paused), the turn notice, the idle warning, the
 * ended notice (with the staff member's reason) and the staff banner. Positions are absolute and
 * versioned: the page keeps the newest version seen and forgets it on every (re)connect. */

import { $, S, fmt, plural } from "./util.js";

const el = {
  banner: $("queue-banner"), title: $("banner-title"), detail: $("banner-detail"),
  notify: $("notify-btn"), staff: $("staff-banner"), notice: $("notice"),
  noticeText: $("notice-text"), noticeNote: $("notice-note"), keep: $("keep-btn"),
  rejoin: $("rejoin-btn"), leave: $("leave-btn"),
};

export const seat = { state: null, ended: false, lastVersion: -1, onChange: () => {} };
let countdownTimer = null;

function etaText(seconds) {
  if (seconds === null || seconds === undefined) return S.eta_unknown;
  const minutes = Math.max(1, Math.ceil(seconds / 60));
  return plural("eta", minutes, { minutes: minutes });
}

function setBanner(kind, title, detail) {
  el.banner.dataset.state = kind;
  el.banner.classList.add("shown");
  if (el.title.textContent !== title) el.title.textContent = title;
  if (el.detail.textContent !== detail) el.detail.textContent = detail;
}

function hideBanner(kind) {
  el.banner.dataset.state = kind;
  el.banner.classList.remove("shown");
}

export function resetVersion() { seat.lastVersion = -1; }

export function applyStatus(status) {
  if (typeof status.version === "number") {
    if (status.version < seat.lastVersion) return;  // older than what the page shows
    seat.lastVersion = status.version;
  }
  const previous = seat.state;
  seat.state = status.state;
  if (seat.state === "queued") {
    const position = Math.max(1, status.position | 0);  // never 0 or negative on screen
    const ahead = Math.max(0, status.ahead | 0);
    const aheadText = ahead === 0 ? S.ahead_zero : plural("ahead", ahead, { ahead: ahead });
    if (status.paused) {
      // No estimate while paused: "about 1 minute" would be a promise nobody can keep.
      setBanner("paused", S.paused_title, fmt(S.paused_detail, { position: position }));
    } else {
      setBanner("queued", fmt(S.queued_title, { position: position }) + " — " +
        etaText(status.eta_seconds), aheadText);
    }
    document.title = fmt(S.title_queue, { position: position });
    showNotifyButton();
  } else if (seat.state === "active") {
    el.notify.hidden = true;
    if (previous === "queued") {
      yourTurn();
    } else if (el.banner.dataset.state !== "turn") {
      hideBanner("active");
      document.title = S.active_title;
    }
  }
  el.leave.hidden = seat.ended || !(seat.state === "queued" || seat.state === "active");
  seat.onChange(seat.state);
}

function yourTurn() {
  setBanner("turn", S.your_turn, S.your_turn_detail);
  document.title = S.title_turn;
  if ("Notification" in window && Notification.permission === "granted" && document.hidden) {
    try { new Notification(S.your_turn, { body: S.notification_body, tag: "chatgate-turn" }); }
    catch (e) { /* some browsers only allow notifications from a service worker */ }
  }
}

/** The person acted after "your turn": tuck the notice away. */
export function turnSeen() {
  if (el.banner.dataset.state === "turn") {
    hideBanner("active");
    document.title = S.active_title;
  }
}

function showNotifyButton() {
  el.notify.hidden = !("Notification" in window) || Notification.permission !== "default";
}

el.notify.addEventListener("click", () => {
  if (!("Notification" in window)) return;
  Notification.requestPermission().then(showNotifyButton, showNotifyButton);
});

function showNotice(text, kind, note) {
  el.notice.hidden = false;
  el.notice.dataset.kind = kind;
  el.noticeText.textContent = text;
  el.noticeNote.textContent = note || "";
  el.noticeNote.hidden = !note;
  el.keep.hidden = kind !== "expiring";
  el.rejoin.hidden = kind !== "ended";
}

export function hideNotice() {
  el.notice.hidden = true;
  if (countdownTimer) { clearInterval(countdownTimer); countdownTimer = null; }
}

export function expiring(seconds) {
  let left = Math.max(0, seconds | 0);
  showNotice(plural("expiring", left, { seconds: left }), "expiring");
  if (countdownTimer) clearInterval(countdownTimer);
  countdownTimer = setInterval(() => {
    left = Math.max(0, left - 1);
    el.noticeText.textContent = plural("expiring", left, { seconds: left });
    if (left === 0) { clearInterval(countdownTimer); countdownTimer = null; }
  }, 1000);
}

export function sessionEnded(reason, note) {
  seat.ended = true;
  seat.state = "closed";
  el.notify.hidden = true;
  el.leave.hidden = true;  // nothing left to leave
  hideNotice();
  const words = S["reason_" + reason] || reason;
  showNotice(fmt(S.ended, { reason: words }), "ended",
    note ? fmt(S.staff_note, { note: note }) : "");
  // The notice (role="alert") says it; the banner steps aside rather than repeat it.
  hideBanner("ended");
  document.title = S.ended_title;
  seat.onChange("closed");
  el.rejoin.focus();
}

export function staffBanner(message) {
  el.staff.textContent = message || "";
  el.staff.hidden = !message;
}

export const queueElements = el;
