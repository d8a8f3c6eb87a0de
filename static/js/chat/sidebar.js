/* The conversations list: grouped by date (today, yesterday, last 7 days, older), searchable
 * over titles and message text, with rename, archive/restore and delete (asked first), an
 * archived view, and a drawer on phones. The server's order (newest activity first) is kept. */

import { $, S, fmt, make, request, confirmDialog } from "./util.js";

const app = $("chat-app");
const el = {
  sidebar: $("sidebar"), list: $("conv-list"), search: $("conv-search"), more: $("conv-more"),
  newBtn: $("new-conv-btn"), archivedBtn: $("archived-btn"), heading: $("conv-heading"),
  empty: $("conv-empty"), toggle: $("drawer-btn"), scrim: $("drawer-scrim"),
};
const PAGE = 50;
const DAY_MS = 86400000;

export const sidebar = {
  status: "active",
  query: "",
  items: [],
  total: 0,
  hasMore: false,
  currentId: null,
  onOpen: () => {},
  onNew: () => {},
  onChanged: () => {},
};
let searchTimer = null;
let loadToken = 0;

function startOfDay(date) { return new Date(date.getFullYear(), date.getMonth(), date.getDate()); }

/** today / yesterday / week / older, in the reader's own time zone. */
export function dateGroup(iso, now) {
  if (!iso) return "older";
  const days = Math.round((startOfDay(now || new Date()) - startOfDay(new Date(iso))) / DAY_MS);
  if (days <= 0) return "today";
  if (days === 1) return "yesterday";
  if (days < 7) return "week";
  return "older";
}

function activity(item) { return item.last_message_at || item.updated_at || item.created_at; }

function actionButton(label, className, onClick) {
  const b = make("button", "linklike " + className, label);
  b.type = "button";
  b.addEventListener("click", (event) => { event.preventDefault(); event.stopPropagation(); onClick(); });
  return b;
}

function itemNode(item) {
  const li = make("li", "conv-item");
  li.dataset.id = item.session_id;
  if (item.session_id === sidebar.currentId) li.classList.add("current");
  const link = make("a", "conv-link", item.title || S.untitled);
  link.href = "/c/" + encodeURIComponent(item.session_id) + "/";
  if (item.session_id === sidebar.currentId) link.setAttribute("aria-current", "page");
  link.addEventListener("click", (event) => {
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    sidebar.onOpen(item);
    closeDrawer();
  });
  li.appendChild(link);
  if (item.last_message) {
    const preview = make("span", "conv-preview", item.last_message);
    link.appendChild(preview);
  }
  const actions = make("span", "conv-actions");
  actions.appendChild(actionButton(S.rename, "act-rename", () => rename(li, item)));
  if (item.status === "archived") {
    actions.appendChild(actionButton(S.restore, "act-restore", () => setStatus(item, "active")));
  } else {
    actions.appendChild(actionButton(S.archive, "act-archive", () => setStatus(item, "archived")));
  }
  actions.appendChild(actionButton(S.delete, "act-delete", () => remove(item)));
  li.appendChild(actions);
  return li;
}

export function render() {
  const groups = { today: [], yesterday: [], week: [], older: [] };
  const now = new Date();
  sidebar.items.forEach((item) => groups[dateGroup(activity(item), now)].push(item));
  const nodes = [];
  ["today", "yesterday", "week", "older"].forEach((key) => {
    if (!groups[key].length) return;
    const section = make("li", "conv-group");
    section.dataset.group = key;
    section.appendChild(make("h3", "conv-group-title", S["group_" + key]));
    const inner = make("ul", "conv-group-list");
    groups[key].forEach((item) => inner.appendChild(itemNode(item)));
    section.appendChild(inner);
    nodes.push(section);
  });
  el.list.replaceChildren(...nodes);
  el.empty.hidden = sidebar.items.length > 0;
  el.empty.textContent = sidebar.query ? S.no_results
    : sidebar.status === "archived" ? S.no_archived : S.no_conversations;
  el.more.hidden = !sidebar.hasMore;
  el.heading.textContent = sidebar.status === "archived" ? S.archived_heading : S.conversations;
  el.archivedBtn.textContent = sidebar.status === "archived" ? S.show_active : S.show_archived;
  el.archivedBtn.setAttribute("aria-pressed", String(sidebar.status === "archived"));
}

export async function load(append) {
  const token = ++loadToken;
  const params = new URLSearchParams({ status: sidebar.status, limit: PAGE,
    offset: append ? sidebar.items.length : 0 });
  if (sidebar.query) params.set("q", sidebar.query);
  el.list.setAttribute("aria-busy", "true");
  try {
    const data = await request("GET", app.dataset.apiUrl + "?" + params.toString());
    if (token !== loadToken) return;
    sidebar.items = append ? sidebar.items.concat(data.sessions) : data.sessions;
    sidebar.total = data.total;
    sidebar.hasMore = !!data.has_more;
    render();
  } catch (e) {
    if (token === loadToken) { el.empty.hidden = false; el.empty.textContent = S.list_failed; }
  } finally {
    if (token === loadToken) el.list.removeAttribute("aria-busy");
  }
}

/** A conversation changed somewhere (this tab, another tab, a frame): move it into place. */
export function upsert(conversation) {
  const at = sidebar.items.findIndex((i) => i.session_id === conversation.session_id);
  const merged = Object.assign({}, at >= 0 ? sidebar.items[at] : {}, conversation);
  if (at >= 0) sidebar.items.splice(at, 1);
  const belongs = merged.status === sidebar.status &&
    (!sidebar.query || (merged.title || "").toLowerCase().includes(sidebar.query.toLowerCase()) || at >= 0);
  if (belongs) {
    // Newest activity first, as the server orders them.
    const key = activity(merged) || "";
    const index = sidebar.items.findIndex((i) => (activity(i) || "") < key);
    sidebar.items.splice(index < 0 ? sidebar.items.length : index, 0, merged);
  }
  render();
  sidebar.onChanged(merged);
}

export function setCurrent(id) {
  sidebar.currentId = id;
  el.list.querySelectorAll(".conv-item").forEach((li) => {
    const on = li.dataset.id === id;
    li.classList.toggle("current", on);
    const link = li.querySelector(".conv-link");
    if (on) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  });
}

function detailUrl(id) { return app.dataset.apiUrl + encodeURIComponent(id); }

function rename(li, item) {
  const form = make("form", "conv-rename");
  const input = make("input");
  input.value = item.title || "";
  input.maxLength = 200;
  input.setAttribute("aria-label", S.rename);
  form.appendChild(input);
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    const title = input.value.trim();
    if (save && title && title !== item.title) {
      try {
        upsert(await request("PATCH", detailUrl(item.session_id), { title: title }));
        return;
      } catch (e) { showListError(e); }
    }
    render();
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); finish(true); });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
  li.replaceChildren(form);
  input.focus();
  input.select();
}

async function setStatus(item, status) {
  try {
    upsert(await request("PATCH", detailUrl(item.session_id), { status: status }));
  } catch (e) { showListError(e); }
}

async function remove(item) {
  const ok = await confirmDialog(fmt(S.delete_confirm, { title: item.title || S.untitled }), S.delete);
  if (!ok) return;
  try {
    await request("DELETE", detailUrl(item.session_id));
    upsert({ session_id: item.session_id, status: "deleted" });
  } catch (e) { showListError(e); }
}

function showListError(error) {
  el.empty.hidden = false;
  el.empty.textContent = error && error.message ? error.message : S.list_failed;
}

// --- the drawer (phones) --------------------------------------------------------------------

function openDrawer() {
  app.classList.add("drawer-open");
  el.toggle.setAttribute("aria-expanded", "true");
  el.search.focus({ preventScroll: true });
}

export function closeDrawer() {
  if (!app.classList.contains("drawer-open")) return;
  app.classList.remove("drawer-open");
  el.toggle.setAttribute("aria-expanded", "false");
}

el.toggle.addEventListener("click", () => {
  if (app.classList.contains("drawer-open")) closeDrawer(); else openDrawer();
});
el.scrim.addEventListener("click", closeDrawer);
document.addEventListener("keydown", (event) => { if (event.key === "Escape") closeDrawer(); });

el.search.addEventListener("input", () => {
  if (searchTimer) clearTimeout(searchTimer);
  // Hangul is typed in compositions: wait for a pause rather than search every jamo.
  searchTimer = setTimeout(() => { sidebar.query = el.search.value.trim(); load(false); }, 250);
});
el.archivedBtn.addEventListener("click", () => {
  sidebar.status = sidebar.status === "archived" ? "active" : "archived";
  load(false);
});
el.more.addEventListener("click", () => load(true));
el.newBtn.addEventListener("click", () => { sidebar.onNew(); closeDrawer(); });
