/* The open conversation: one path root→leaf of messages, newest at the bottom, older pages
 * loaded when the reader scrolls to the top. Live frames and reloaded history go through the
 * same `fillMessage`, so a reload looks exactly like what was seen live. The list follows a
 * streaming answer unless the reader scrolled up; then a "jump to the latest" button appears. */

import { $, S, make, copyText, request, reducedMotion } from "./util.js";
import { renderMarkdown } from "./markdown.js";
import { renderAttachments } from "./files.js";

const app = $("chat-app");
const list = $("messages");
const jump = $("jump-btn");
const heading = $("chat-heading");
const PAGE = 30;
// Within this many pixels of the bottom counts as "at the bottom" (sub-pixel rounding, zoom).
const STICK_PX = 48;
const OLDER_PX = 120;

export const thread = {
  conversationId: null,
  title: "",
  path: [],
  hasMore: false,
  leafId: null,
  loading: false,
  streamingId: null,
  generation: 0,  // bumps on every conversation switch: late answers of the old one are dropped
  actions: { regenerate() {}, edit() {}, cancel() {} },
  canGenerate: () => false,
};

let stick = true;
let renderQueued = new Set();

/** Message ids are integers on the server; ids read from the DOM arrive as strings. */
function asId(value) {
  if (value === undefined || value === null || value === "") return null;
  return /^\d+$/.test(String(value)) ? Number(value) : value;
}

export function normalize(m) {
  const id = asId(m.message_id !== undefined ? m.message_id : m.id);
  return {
    id: id,
    parentId: asId(m.parent_id),
    sender: m.sender_type || m.role || "assistant",
    content: m.content || "",
    status: m.status || "done",
    siblings: Array.isArray(m.sibling_ids) && m.sibling_ids.length ? m.sibling_ids.map(asId) : [id],
    edited: !!m.edited,
    attachments: Array.isArray(m.attachments) ? m.attachments : [],
  };
}

function byId(id) { return thread.path.find((m) => String(m.id) === String(id)); }
function liFor(id) { return list.querySelector('li[data-id="' + CSS.escape(String(id)) + '"]'); }

function lastAssistant() {
  for (let i = thread.path.length - 1; i >= 0; i -= 1) {
    if (thread.path[i].sender === "assistant") return thread.path[i];
  }
  return null;
}

function button(label, className, onClick, aria) {
  const b = make("button", className, label);
  b.type = "button";
  if (aria) { b.setAttribute("aria-label", aria); b.title = aria; }
  b.addEventListener("click", onClick);
  return b;
}

function branchNav(msg) {
  const nav = make("span", "branch");
  const index = msg.siblings.findIndex((id) => String(id) === String(msg.id));
  const go = (delta) => () => {
    const target = msg.siblings[index + delta];
    if (target !== undefined) open(thread.conversationId, { leaf: target, focusId: target });
  };
  const prev = button("‹", "linklike branch-prev", go(-1), S.previous_version);
  const next = button("›", "linklike branch-next", go(1), S.next_version);
  prev.disabled = index <= 0;
  next.disabled = index >= msg.siblings.length - 1;
  nav.append(prev, make("span", "branch-pos", (index + 1) + "/" + msg.siblings.length), next);
  return nav;
}

/** Builds a message's bubble from its data: the only render path, live or reloaded. */
function fillMessage(li, msg) {
  li.className = "msg msg-" + msg.sender;
  if (msg.status === "cancelled" || msg.status === "failed") li.classList.add("msg-" + msg.status);
  const busy = msg.status === "streaming" || msg.status === "pending";
  li.classList.toggle("streaming", busy);
  if (busy) li.setAttribute("aria-busy", "true"); else li.removeAttribute("aria-busy");
  li.dataset.id = msg.id;
  li.replaceChildren();
  li.appendChild(make("span", "who", msg.sender === "user" ? S.you : S.assistant));
  const text = make("div", "text");
  if (msg.sender === "assistant") renderMarkdown(text, msg.content);
  else text.textContent = msg.content;
  li.appendChild(text);
  const files = renderAttachments(msg.attachments);
  if (files) li.appendChild(files);
  if (msg.sender === "assistant" && msg.status === "cancelled") li.appendChild(make("span", "tag", S.stopped));
  if (msg.sender === "assistant" && msg.status === "failed") li.appendChild(make("span", "tag", S.failed));
  if (msg.edited && msg.sender === "user") li.appendChild(make("span", "tag", S.edited));
  if (busy) return;
  const bar = make("div", "msg-actions");
  if (msg.siblings.length > 1) bar.appendChild(branchNav(msg));
  if (msg.sender === "assistant") {
    bar.appendChild(button(S.copy_answer, "linklike act-copy", async (event) => {
      const ok = await copyText(msg.content);
      event.target.textContent = ok ? S.copied : S.copy_failed;
      setTimeout(() => { event.target.textContent = S.copy_answer; }, 1500);
    }));
    if (lastAssistant() === msg && thread.conversationId && thread.canGenerate()) {
      const label = msg.status === "failed" ? S.retry : S.regenerate;
      bar.appendChild(button(label, "linklike act-regenerate", () => thread.actions.regenerate(msg.id)));
    }
  } else if (msg.sender === "user" && thread.conversationId && thread.canGenerate()) {
    bar.appendChild(button(S.edit, "linklike act-edit", () => startEdit(li, msg)));
  }
  if (bar.childNodes.length) li.appendChild(bar);
}

function startEdit(li, msg) {
  const form = make("form", "edit-form");
  const area = make("textarea");
  area.value = msg.content;
  area.maxLength = Number(app.dataset.maxChars) || 16000;
  area.rows = Math.min(8, msg.content.split("\n").length + 1);
  area.setAttribute("aria-label", S.edit);
  const save = make("button", "", S.save_and_send);
  save.type = "submit";
  const cancel = button(S.cancel, "secondary", () => fillMessage(li, msg));
  form.append(area, save, cancel);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (area.value.trim()) thread.actions.edit(msg.id, area.value);
    fillMessage(li, msg);
  });
  area.addEventListener("keydown", (event) => {
    if (event.key === "Escape") fillMessage(li, msg);
  });
  li.querySelector(".msg-actions")?.remove();
  li.querySelector(".text").replaceWith(form);
  area.focus();
}

function renderAll() {
  const items = thread.path.map((msg) => { const li = make("li"); fillMessage(li, msg); return li; });
  list.replaceChildren(...items);
}

/** Re-renders the last assistant and last user bubbles (their buttons depend on position). */
export function refreshActions() {
  const tail = thread.path.slice(-2);
  tail.forEach((m) => { const li = liFor(m.id); if (li) fillMessage(li, m); });
}

function append(msg) {
  const before = thread.path[thread.path.length - 1];
  thread.path.push(msg);
  const li = make("li");
  fillMessage(li, msg);
  list.appendChild(li);
  if (before) { const prev = liFor(before.id); if (prev) fillMessage(prev, before); }
  follow();
}

/** Puts msg where its sibling (same parent, same sender) stands and drops what came after. */
function replaceBranch(msg) {
  // An answer with no known parent cannot say whose sibling it is; a first question can.
  if (msg.parentId === null && msg.sender !== "user") return false;
  const at = thread.path.findIndex((m) => m.sender === msg.sender && m.id !== msg.id &&
    String(m.parentId) === String(msg.parentId));
  if (at < 0) return false;
  const old = thread.path[at];
  msg.siblings = old.siblings.includes(msg.id) ? old.siblings : old.siblings.concat([msg.id]);
  thread.path.length = at;
  list.querySelectorAll("li").forEach((li, i) => { if (i >= at) li.remove(); });
  append(msg);
  return true;
}

function render(id) {
  // Chunks come faster than frames are painted: render each bubble at most once a frame.
  if (renderQueued.has(id)) return;
  renderQueued.add(id);
  requestAnimationFrame(() => {
    renderQueued.delete(id);
    const msg = byId(id);
    const li = liFor(id);
    if (msg && li) fillMessage(li, msg);
    follow();
  });
}

// --- scrolling ----------------------------------------------------------------------------

function atBottom() {
  return list.scrollHeight - list.scrollTop - list.clientHeight <= STICK_PX;
}

export function scrollToEnd(smooth) {
  list.scrollTo({ top: list.scrollHeight, behavior: smooth && !reducedMotion() ? "smooth" : "auto" });
  stick = true;
  jump.hidden = true;
}

function follow() {
  if (stick) scrollToEnd(false);
  else jump.hidden = false;
}

list.addEventListener("scroll", () => {
  stick = atBottom();
  if (stick) jump.hidden = true;
  if (list.scrollTop < OLDER_PX && thread.hasMore && !thread.loading) loadOlder();
}, { passive: true });

jump.addEventListener("click", () => scrollToEnd(true));

// --- loading ------------------------------------------------------------------------------

function messagesUrl(id, params) {
  const query = new URLSearchParams(params).toString();
  return app.dataset.apiUrl + encodeURIComponent(id) + "/messages" + (query ? "?" + query : "");
}

async function loadOlder() {
  const first = thread.path[0];
  if (!first || !thread.conversationId) return;
  thread.loading = true;
  const generation = thread.generation;
  const params = { limit: PAGE, before: first.id };
  if (thread.leafId) params.leaf = thread.leafId;
  try {
    const data = await request("GET", messagesUrl(thread.conversationId, params));
    if (generation !== thread.generation) return;
    const older = data.messages.map(normalize).filter((m) => !byId(m.id));
    const height = list.scrollHeight;
    const top = list.scrollTop;
    thread.path = older.concat(thread.path);
    const items = older.map((msg) => { const li = make("li"); fillMessage(li, msg); return li; });
    list.prepend(...items);
    // Keep what the reader was looking at in place while the page grows above it.
    list.scrollTop = top + (list.scrollHeight - height);
    thread.hasMore = !!data.has_more;
  } catch (e) {
    showThreadError(S.load_failed);
  } finally {
    if (generation === thread.generation) thread.loading = false;
  }
}

function showThreadError(text) {
  const error = $("chat-error");
  error.textContent = text;
  error.hidden = false;
}

/** Opens a conversation (or none): its newest page, or the path through `leaf`. */
export async function open(conversationId, options) {
  const opts = options || {};
  thread.generation += 1;
  const generation = thread.generation;
  thread.conversationId = conversationId;
  thread.streamingId = null;
  app.dataset.conversation = conversationId || "";
  if (!conversationId) {
    thread.path = []; thread.hasMore = false; thread.leafId = null; thread.loading = false;
    setTitle(opts.title || "");
    renderAll();
    return;
  }
  thread.loading = true;
  const params = { limit: PAGE };
  if (opts.leaf) params.leaf = opts.leaf;
  try {
    const data = await request("GET", messagesUrl(conversationId, params));
    if (generation !== thread.generation) return;
    thread.path = data.messages.map(normalize);
    thread.hasMore = !!data.has_more;
    thread.leafId = data.leaf_id || null;
    const streaming = thread.path.find((m) => m.status === "streaming");
    thread.streamingId = streaming ? streaming.id : null;
    renderAll();
    const focus = opts.focusId !== undefined ? liFor(opts.focusId) : null;
    if (focus) { focus.scrollIntoView({ block: "nearest" }); stick = atBottom(); }
    else scrollToEnd(false);
  } catch (e) {
    if (generation === thread.generation) showThreadError(S.load_failed);
  } finally {
    if (generation === thread.generation) thread.loading = false;
  }
}

export function setTitle(title) {
  thread.title = title || "";
  heading.textContent = thread.title || S.new_conversation_title;
}

// --- live frames --------------------------------------------------------------------------

/** Whether a frame belongs to the open conversation (frames without one: an older server). */
export function concerns(frame) {
  return frame.conversation_id === undefined || frame.conversation_id === null ||
    String(frame.conversation_id) === String(thread.conversationId);
}

export function onQuestion(frame) {
  const msg = normalize(Object.assign({ sender_type: "user", status: "done" }, frame));
  if (byId(msg.id)) return;
  if (!(msg.edited && replaceBranch(msg))) append(msg);
  if (frame.answer_id !== undefined && frame.answer_id !== null) {
    append(normalize({ message_id: frame.answer_id, parent_id: msg.id, sender_type: "assistant",
      status: "pending" }));
  }
  thread.leafId = frame.answer_id || msg.id;
  scrollToEnd(false);
}

export function onStreamStart(frame) {
  let msg = byId(frame.message_id);
  if (!msg) {
    msg = normalize({ message_id: frame.message_id, parent_id: frame.parent_id,
      sender_type: "assistant", status: "streaming" });
    // A regenerated answer takes its sibling's place; otherwise it follows the question.
    if (!replaceBranch(msg)) append(msg);
  }
  msg.status = "streaming";
  msg.content = "";
  thread.streamingId = msg.id;
  thread.leafId = msg.id;
  render(msg.id);
}

export function onChunk(frame) {
  const msg = byId(frame.message_id);
  if (!msg) return;
  msg.content += frame.content || "";
  render(msg.id);
}

export function onStreamEnd(frame) {
  const msg = byId(frame.message_id);
  if (thread.streamingId !== null && String(thread.streamingId) === String(frame.message_id)) {
    thread.streamingId = null;
  }
  if (!msg) return;
  msg.status = frame.status || "done";
  const li = liFor(msg.id);
  if (li) fillMessage(li, msg);
  follow();
}

/** The seat ended mid-answer: whatever was streaming stops where it is. */
export function stopAll() {
  thread.path.forEach((m) => {
    if (m.status === "streaming" || m.status === "pending") {
      m.status = "cancelled";
      const li = liFor(m.id);
      if (li) fillMessage(li, m);
    }
  });
  thread.streamingId = null;
}

/** The message a new question follows: the end of the branch on screen. */
export function lastMessageId() {
  const last = thread.path[thread.path.length - 1];
  return last ? last.id : null;
}

export function pendingAnswerId() {
  const last = thread.path[thread.path.length - 1];
  return last && last.sender === "assistant" && last.status === "pending" ? last.id : null;
}

/** The question still waiting for its answer (an older server names no answer id). */
export function waitingQuestionId() {
  const last = thread.path[thread.path.length - 1];
  return last && last.sender === "user" ? last.id : null;
}

export function isEmpty() { return thread.path.length === 0; }
