/* The chat page: wires the seat (queue.js), the socket (socket.js), the conversations list
 * (sidebar.js), the open conversation (thread.js) and the composer (composer.js). Each
 * conversation has its own URL, /c/<uuid>/, kept in step with history.pushState. */

import { $, S, fmt, confirmDialog, request } from "./util.js";
import { seat, applyStatus, expiring, sessionEnded, staffBanner, turnSeen, hideNotice,
  queueElements } from "./queue.js";
import { start, sendFrame, setConn, isPolling } from "./socket.js";
import { sidebar, load as loadSidebar, upsert, setCurrent } from "./sidebar.js";
import { thread, open, setTitle, concerns, onQuestion, onStreamStart, onChunk,
  onStreamEnd, stopAll, pendingAnswerId, waitingQuestionId, lastMessageId, refreshActions } from "./thread.js";
import { composer, setEnabled, showError, refused, recorded, ownsClientId, setStreaming,
  showWaiting, hideWaiting, setMaxLength, composerElements } from "./composer.js";
import { onTyping } from "./typing.js";
import { attach, send as sendWithFile, staged, setAttachEnabled } from "./attach.js";

const app = $("chat-app");
const PATH = /^\/c\/([0-9a-fA-F-]{32,36})\/?$/;
let typingSentAt = 0;
let activeStream = null;  // the answer the seat is writing now, in whichever conversation

function urlFor(id) { return id ? "/c/" + id + "/" : "/"; }

function go(id, title, replace) {
  if (location.pathname !== urlFor(id)) {
    history[replace ? "replaceState" : "pushState"]({ conversation: id }, "", urlFor(id));
  }
  setCurrent(id);
  setTitle(title || "");
}

function openConversation(id, title) {
  go(id, title);
  composerElements.input.focus({ preventScroll: true });
  return open(id);
}

// --- frames from the server -----------------------------------------------------------------

function onMessage(frame) {
  const mine = ownsClientId(frame.client_id) ||
    (!frame.client_id && composer.pending && composer.pending.text === frame.content);
  // The first question of a new conversation: the page now shows that conversation.
  if (mine && !thread.conversationId && frame.conversation_id) {
    thread.conversationId = frame.conversation_id;
    app.dataset.conversation = frame.conversation_id;
    // conversation.updated may have come first: the sidebar already knows the title.
    const known = sidebar.items.find((i) => i.session_id === frame.conversation_id);
    go(frame.conversation_id, known ? known.title : thread.title);
  }
  if (concerns(frame)) onQuestion(frame);
  recorded(frame);
}

function onConversation(conversation) {
  upsert(conversation);
  if (conversation.session_id !== thread.conversationId) return;
  if (conversation.status === "deleted") {
    go(null, "", true);
    open(null);
  } else if (conversation.title !== undefined) {
    setTitle(conversation.title);
  }
}

function onError(frame) {
  if (frame.code === "UNAVAILABLE") { setConn(S.unavailable); return; }
  if (frame.code === "CAPACITY_TIMEOUT") hideWaiting();
  refused(frame);
  if (frame.code === "RATE_LIMIT") return;  // the composer says it, with a countdown
  const text = S["err_" + frame.code] || frame.message || frame.code;
  showError(fmt(text, { seconds: frame.retry_after || "", message: frame.message || "" }));
}

function handle(frame) {
  switch (frame.type) {
    case "queue.status": applyStatus(frame); break;
    case "session.activated":
      if (seat.state !== "active") { seat.state = "queued"; applyStatus({ state: "active" }); }
      break;
    case "session.expiring": expiring(frame.seconds_left); break;
    case "session.closed":
      activeStream = null;
      stopAll();
      setStreaming(false);
      hideWaiting();
      sessionEnded(frame.reason, frame.note);
      break;
    case "banner.changed": staffBanner(frame.message); break;
    case "message": onMessage(frame); break;
    case "conversation.updated": if (frame.conversation) onConversation(frame.conversation); break;
    case "stream_start":
      // Stop follows the answer being written even after the reader opened another
      // conversation: a seat writes one answer at a time.
      activeStream = frame.message_id;
      setStreaming(true);
      if (!concerns(frame)) break;
      hideWaiting();
      onStreamStart(frame);
      break;
    case "stream_chunk": if (concerns(frame)) onChunk(frame); break;
    case "stream_end":
      if (String(activeStream) === String(frame.message_id)) {
        activeStream = null;
        setStreaming(false);
      }
      if (concerns(frame)) onStreamEnd(frame);
      break;
    case "system":
      if (frame.event === "waiting_for_capacity") {
        let id = frame.message_id !== undefined ? frame.message_id : pendingAnswerId();
        if (id === null) id = waitingQuestionId();
        showWaiting(frame.place, () => {
          // The server wants a number (ids read back from the DOM would be strings).
          if (id !== null && id !== undefined) sendFrame({ type: "cancel", message_id: Number(id) });
          hideWaiting();
        });
      } else if (frame.event === "slot_lost") {
        showError(S.slot_lost);
      } else if (frame.event === "user_left") {
        onTyping({ is_typing: false });
      }
      break;
    case "typing": onTyping(frame); break;
    case "error": onError(frame); break;
  }
}

// --- what the person does -------------------------------------------------------------------

function notConnected() {
  showError(isPolling() ? S.polling : S.not_connected);
  return false;
}

composer.hasFile = () => staged() !== null;
// A file goes up over HTTP with its question (attach.js); the question's frame still comes back
// through the socket, with this client id, as one sent on the socket would.
attach.conversation = async () => {
  if (thread.conversationId) return thread.conversationId;
  const created = await request("POST", app.dataset.apiUrl, {});
  thread.conversationId = created.session_id;
  app.dataset.conversation = created.session_id;
  go(created.session_id, "");
  return created.session_id;
};

composer.onSend = (text, clientId) => {
  if (staged()) {
    sendWithFile(text, clientId).then((ok) => {
      if (ok) { turnSeen(); recorded({ client_id: clientId }); } else refused({ client_id: clientId });
    });
    return true;
  }
  const frame = { type: "message", content: text, client_id: clientId };
  if (thread.conversationId) {
    frame.conversation_id = thread.conversationId;
    // Ask on the branch on screen (after ‹1/2› switching it may not be the newest one).
    const parent = lastMessageId();
    if (parent !== null) frame.parent_id = parent;
  }
  if (!sendFrame(frame)) return notConnected();
  turnSeen();
  sendFrame({ type: "typing", is_typing: false });
  typingSentAt = 0;
  return true;
};

composer.onStop = () => {
  if (activeStream !== null) sendFrame({ type: "cancel", message_id: activeStream });
};

thread.canGenerate = () => seat.state === "active" && !seat.ended;
thread.actions.regenerate = (id) => {
  if (!sendFrame({ type: "regenerate", message_id: id })) notConnected();
};
thread.actions.edit = (id, content) => {
  if (!sendFrame({ type: "edit", message_id: id, content: content,
    client_id: String(Date.now()) })) notConnected();
};

seat.onChange = (state) => {
  setEnabled(state === "active" && !seat.ended);
  setAttachEnabled(state === "active" && !seat.ended);
  refreshActions();
};

composerElements.input.addEventListener("input", () => {
  const now = Date.now();
  if (now - typingSentAt > 3000) {
    typingSentAt = now;
    sendFrame({ type: "typing", is_typing: true });
  }
});

queueElements.keep.addEventListener("click", () => {
  sendFrame({ type: "heartbeat", keep: true });
  hideNotice();
  composerElements.input.focus();
});

queueElements.rejoin.addEventListener("click", () => location.reload());

queueElements.leave.addEventListener("click", async () => {
  if (seat.ended) return;
  if (!(await confirmDialog(S.leave_confirm, S.leave))) return;
  if (!sendFrame({ type: "leave" })) {
    request("POST", app.dataset.leaveUrl).then(() => sessionEnded("user"),
      () => setConn(S.unavailable));
  }
});

sidebar.onOpen = (item) => openConversation(item.session_id, item.title);
sidebar.onNew = () => {
  go(null, "");
  open(null);
  composerElements.input.focus();
};

window.addEventListener("popstate", () => {
  const match = location.pathname.match(PATH);
  const id = match ? match[1] : null;
  if (id === thread.conversationId) return;
  const item = sidebar.items.find((i) => i.session_id === id);
  setCurrent(id);
  setTitle(item ? item.title : "");
  open(id);
});

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && seat.state === "active" && queueElements.banner.dataset.state === "turn") {
    document.title = S.title_turn;
  }
});

// --- start ----------------------------------------------------------------------------------

setMaxLength();
const initial = app.dataset.conversationId || null;
if (initial) {
  go(initial, app.dataset.conversationTitle, true);
  open(initial);
} else {
  setTitle("");
}
loadSidebar(false);
start(handle);
