/* Answers as Markdown, made safe: marked turns text into HTML, raw HTML the model wrote is shown
 * as text (never interpreted), DOMPurify sanitises the result, links keep only safe protocols
 * and open with rel="noopener", and highlight.js colours code. One function renders live and
 * reloaded answers alike. */

import { marked } from "../../vendor/marked-18.2.1/marked.esm.js";
import DOMPurify from "../../vendor/dompurify-3.5.0/purify.es.mjs";
import hljs from "../../vendor/highlightjs-11.12.0/highlight.min.js";
import { S, copyText, make } from "./util.js";

const SAFE_LINK = /^(https?:|mailto:)/i;
const SAFE_IMAGE = /^https?:/i;

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// Raw HTML inside an answer is displayed, not run: a model quoting <script> shows <script>.
marked.use({
  gfm: true,
  breaks: false,
  renderer: {
    html(token) { return escapeHtml(typeof token === "string" ? token : token.text); },
  },
});

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    const href = node.getAttribute("href") || "";
    // Relative links and anchors would point into this site; only absolute safe ones stay.
    if (!SAFE_LINK.test(href.trim())) node.removeAttribute("href");
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  } else if (node.tagName === "IMG") {
    const src = node.getAttribute("src") || "";
    if (!SAFE_IMAGE.test(src.trim())) node.removeAttribute("src");
    node.setAttribute("loading", "lazy");
    node.setAttribute("referrerpolicy", "no-referrer");
  }
});

const PURIFY = {
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "object",
    "embed", "svg", "math"],
  FORBID_ATTR: ["style"],
  ALLOW_DATA_ATTR: false,
};

hljs.configure({ ignoreUnescapedHTML: true });

/** Safe HTML for an answer's Markdown. */
export function toSafeHtml(text) {
  return DOMPurify.sanitize(marked.parse(String(text || "")), PURIFY);
}

/** Renders `text` into `target`: Markdown, sanitised, code highlighted with a copy button. */
export function renderMarkdown(target, text) {
  target.innerHTML = toSafeHtml(text);
  target.querySelectorAll("pre > code").forEach((code) => {
    const pre = code.parentNode;
    const language = (code.className.match(/language-([\w+#-]+)/) || [])[1];
    if (language && !hljs.getLanguage(language)) code.className = "";
    try { hljs.highlightElement(code); } catch (e) { /* plain text is fine */ }
    const wrap = make("div", "code-block");
    const bar = make("div", "code-bar");
    bar.appendChild(make("span", "code-lang", language || ""));
    const copy = make("button", "code-copy secondary", S.copy_code);
    copy.type = "button";
    copy.addEventListener("click", async () => {
      const ok = await copyText(code.textContent);
      copy.textContent = ok ? S.copied : S.copy_failed;
      setTimeout(() => { copy.textContent = S.copy_code; }, 1500);
    });
    bar.appendChild(copy);
    pre.replaceWith(wrap);
    wrap.appendChild(bar);
    wrap.appendChild(pre);
  });
}
