"""The XSS corpus through the real chat page in Chromium: zero script executions.

Every entry is sent as a question; the echo backend answers with it, so it comes back as a
streamed answer that the page renders as Markdown (marked → DOMPurify → highlight.js), then
again from the reloaded history. Multi-line entries (which the echo joins on one line) go
through the page's own Markdown module in the same page. `window.__xss` counts executions and a
dialog listener counts alert()s; the DOM is also checked for anything that could run later.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.live import DaphneServer, start_daphne
from tests.test_chat_browser import logged_in_context, make_user, shot

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(240),
    pytest.mark.usefixtures("orm_beside_playwright"),
]

X = "window.__xss++"
ONE_LINE = [
    f"<script>{X}</script>",
    f"<img src=x onerror={X}>",
    f'<img src="x" onerror="{X}">',
    f'<svg onload="{X}"></svg>',
    f"<svg><script>{X}</script></svg>",
    f"[click me](javascript:{X})",
    f"[CLICK](JaVaScRiPt:{X})",
    f"[enc](&#106;avascript:{X})",
    "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    f"![img](javascript:{X})",
    f'![img](x" onerror="{X})',
    f'<a href="javascript:{X}">raw link</a>',
    f"`<img src=x onerror={X}>`",
    f'<iframe src="javascript:{X}"></iframe>',
    f"<details open ontoggle={X}>x</details>",
    f"**<img src=x onerror={X}",
    f'[unclosed](javascript:{X} "t"',
    f'<math><mi xlink:href="javascript:{X}">m</mi></math>',
    f"<style>@import 'javascript:{X}';</style>",
    f"<body onload={X}>",
    f"<form><button formaction=javascript:{X}>go</button></form>",
    f"<input autofocus onfocus={X}>",
    f"<div onmouseover={X}>hover me</div>",
    '<a href="javascript:alert(1)">alert link</a>',
    "<img src=x onerror=alert(1)>",
    f'<object data="javascript:{X}"></object>',
    f'<embed src="javascript:{X}">',
    f'<svg><a xlink:href="javascript:{X}"><text>t</text></a></svg>',
    f'<noscript><p title="</noscript><img src=x onerror={X}>">',
    f"<scr<script>ipt>{X}</scr</script>ipt>",
    "[a safe link](https://example.com/) opens in a new tab without an opener",
    "[relative](/accounts/logout/) and [anchor](#x) links are dropped",
]
MULTI_LINE = [
    f"```html\n<script>{X}</script>\n<img src=x onerror={X}>\n```",
    f"<svg>\n<script>{X}</script>\n</svg>",
    f"| a | b |\n|---|---|\n| <img src=x onerror={X}> | [x](javascript:{X}) |",
    f"> quote <img src=x onerror={X}>\n> [q](javascript:{X})",
    f"# <img src=x onerror={X}>\n\n- [l](data:text/html,<script>{X}</script>)",
    f'<div\nonmouseover="{X}">multi-line tag</div>',
    f"[ref]\n\n[ref]: javascript:{X}",
    f'<a href="javas\ncript:{X}">split</a>',
    f"```\n</code></pre><img src=x onerror={X}>\n```",
]

# Nothing that could run later: no script-bearing elements, no handlers, no unsafe URLs.
DOM_CHECK = """(root) => {
  const bad = [];
  root.querySelectorAll("script, iframe, object, embed, svg, math, style, form, input, base, meta")
    .forEach((n) => bad.push("element " + n.tagName));
  root.querySelectorAll("*").forEach((n) => {
    for (const a of n.attributes) {
      if (/^on/i.test(a.name)) bad.push("handler " + n.tagName + " " + a.name);
      if (["href", "src", "xlink:href", "action", "formaction", "data"].includes(a.name) &&
          !/^(https?:|mailto:)/i.test(a.value.trim())) bad.push("url " + n.tagName + " " + a.value);
    }
  });
  root.querySelectorAll("a[href]").forEach((a) => {
    if (!/noopener/.test(a.rel)) bad.push("rel " + a.href);
  });
  return bad;
}"""


@pytest.fixture
def server(transactional_db: None, tmp_path: Path) -> Iterator[DaphneServer]:
    server = start_daphne(
        tmp_path, "xss", ECHO_TOKEN_DELAY_SECONDS="0", CHAT_RATE_PER_MINUTE="1000"
    )
    yield server
    server.stop()


def watch(page: Any) -> list[str]:
    dialogs: list[str] = []
    page.add_init_script("window.__xss = 0;")

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return dialogs


def poke(page: Any) -> None:
    """Give anything that waits for a person a chance: click every link, hover everything."""
    from playwright.sync_api import Error

    for node in page.locator("#messages .text *").all()[:60]:
        try:
            if node.is_visible():
                node.hover(force=True, timeout=1_000)
                if node.evaluate("n => n.tagName") == "A":
                    node.click(no_wait_after=True, force=True, timeout=1_000)
        except Error:
            continue  # detached or covered: nothing to poke
    page.wait_for_timeout(500)


def test_xss_corpus_never_runs_live_reloaded_or_multiline(
    server: DaphneServer, browser: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    context = logged_in_context(browser, server, make_user("mallory"))
    page = context.new_page()
    dialogs = watch(page)
    popups: list[Any] = []
    context.on("page", lambda p: popups.append(p))
    page.goto(server.url + "/")
    expect(page.locator("#chat-input")).to_be_enabled(timeout=15_000)

    answers = page.locator(".msg-assistant:not(.streaming)")
    for index, entry in enumerate(ONE_LINE, start=1):
        if index > 9:  # a person's question budget: 10 at once, then one a second
            page.wait_for_timeout(1_000)
        page.fill("#chat-input", entry)
        page.keyboard.press("Enter")
        expect(answers).to_have_count(index, timeout=15_000)
    # The text came through (escaped or rendered), not dropped wholesale.
    expect(page.locator(".msg-assistant").first).to_contain_text("Echo:")
    expect(page.locator(".msg-user .text").first).to_have_text(ONE_LINE[0])
    assert page.evaluate("window.__xss") == 0
    assert dialogs == []
    poke(page)
    shot(page, artifacts_dir, "xss-live")
    assert page.evaluate("window.__xss") == 0
    assert dialogs == []
    assert page.locator("#messages").evaluate(DOM_CHECK) == []

    # Reloaded history goes through the same renderer: still nothing runs.
    page.reload()
    expect(page.locator(".msg-assistant").first).to_be_visible(timeout=15_000)
    for _ in range(10):  # the newest page first; older pages come as the reader scrolls up
        if page.locator(".msg-assistant").count() == len(ONE_LINE):
            break
        page.locator("#messages").evaluate("(el) => el.scrollTo(0, 0)")
        page.wait_for_timeout(700)
    expect(page.locator(".msg-assistant")).to_have_count(len(ONE_LINE))
    poke(page)
    assert page.evaluate("window.__xss") == 0
    assert dialogs == []
    assert page.locator("#messages").evaluate(DOM_CHECK) == []

    # Multi-line Markdown through the page's own module (the same one live answers use).
    found = page.evaluate(
        """async ([entries, check]) => {
          const m = await import("/static/js/chat/markdown.js");
          const box = document.createElement("div");
          box.id = "multi";
          document.body.appendChild(box);
          for (const entry of entries) {
            const one = document.createElement("div");
            one.className = "text";
            m.renderMarkdown(one, entry);
            box.appendChild(one);
          }
          await new Promise((r) => setTimeout(r, 300));
          return eval(check)(box);
        }""",
        [MULTI_LINE, DOM_CHECK],
    )
    assert found == []
    for link in page.locator("#multi a").all():
        link.click(no_wait_after=True, force=True)
    page.wait_for_timeout(300)
    assert page.evaluate("window.__xss") == 0
    assert dialogs == []
    # Only the safe link opened (a new tab); no unsafe URL was navigated to anywhere.
    assert not any(p.url.lower().startswith(("javascript:", "data:")) for p in popups)
    assert page.url.startswith(server.url)
    context.close()


def test_markdown_renders_headings_lists_tables_quotes_links_and_code(
    server: DaphneServer, browser: Any, artifacts_dir: Path
) -> None:
    """The same module the thread uses: structure survives sanitising; code gets highlighted
    and a copy button; links open safely in a new tab."""
    from playwright.sync_api import expect

    context = logged_in_context(browser, server, make_user("mark"))
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.goto(server.url + "/")
    text = (
        "# Title\n\n## Sub\n\nSome *emphasis* and **bold** and `code`.\n\n"
        "- one\n- two\n\n1. first\n2. second\n\n"
        "| name | value |\n|---|---|\n| a | 1 |\n\n"
        "> a quote\n\n[site](https://example.com/x)\n\n"
        "```python\ndef f(x):\n    return x + 1\n```\n"
    )
    page.evaluate(
        """async (text) => {
          const m = await import("/static/js/chat/markdown.js");
          const li = document.createElement("li");
          li.className = "msg msg-assistant";
          const box = document.createElement("div");
          box.className = "text";
          box.id = "md";
          li.appendChild(box);
          document.getElementById("messages").appendChild(li);
          m.renderMarkdown(box, text);
        }""",
        text,
    )
    md = page.locator("#md")
    assert md.locator("h1").inner_text() == "Title"
    assert md.locator("h2").inner_text() == "Sub"
    assert md.locator("ul > li").count() == 2 and md.locator("ol > li").count() == 2
    assert md.locator("table th").all_inner_texts() == ["name", "value"]
    assert md.locator("blockquote").inner_text().strip() == "a quote"
    link = md.locator("a")
    assert link.get_attribute("href") == "https://example.com/x"
    assert link.get_attribute("target") == "_blank"
    assert "noopener" in (link.get_attribute("rel") or "")
    code = md.locator(".code-block pre code")
    assert "hljs" in (code.get_attribute("class") or "")
    assert md.locator(".code-block .hljs-keyword").first.inner_text() == "def"
    assert md.locator(".code-lang").inner_text() == "python"
    md.locator(".code-copy").click()
    expect(page.locator(".code-copy")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "def f(x):\n    return x + 1\n"
    shot(page, artifacts_dir, "markdown")
    context.close()
