"""Check the built book's pages in headless Chromium: does every table, code block and display
equation fit the text column, at each window width?

Run after any change to a chapter's look (it needs Debian's ``chromium``; CI has none, so the test
suite checks the stored outputs' text widths instead, ``tests/test_notebooks.py``)::

    make book
    .tools/bin/uv run python scripts/check_page_widths.py                # every page, 1280 and 1024 px
    .tools/bin/uv run python scripts/check_page_widths.py --widths 390 --pages notebooks/31-*.html

For each page and width it loads a copy of the page with a small script appended (the copy sits
beside the page, so its styles, MathJax and images load from the build as they do for a reader,
and is deleted afterwards) and reports every element wider than its box:

- ``page``: the whole page scrolls sideways (the reader loses the right edge);
- ``table`` / ``math``: a table or display equation wider than the text column (cut off, or
  scrolling inside its own box: the report says which);
- ``code``: a code block whose lines are wider than their box (it scrolls sideways).

Exit status 1 when anything overflows (``--allow`` lists kinds that only warn), 2 when Chromium is
missing. Prints one line per element: page, width, kind, how far over (px), its first words.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("page", "table", "math", "code")

# Runs in the page once MathJax has typeset it; writes its findings into <pre id="width-report">.
PROBE = """
<script>
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const column = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
  const colWidth = column.clientWidth;
  const found = [];
  const text = el => (el.innerText || el.textContent || "").replace(/\\s+/g, " ").trim().slice(0, 60);
  const over = (kind, el, by, how) => { if (by > 1) found.push({kind, by: Math.round(by), how, text: text(el)}); };
  over("page", document.body, document.documentElement.scrollWidth - window.innerWidth, "page scrolls sideways");
  for (const el of column.querySelectorAll("table")) {
    const box = el.closest(".output, .cell_output, .table-wrapper, .pst-scrollable-table-container") || el.parentElement;
    const scrolls = box && box.scrollWidth > box.clientWidth + 1;
    over("table", el, el.getBoundingClientRect().width - colWidth, scrolls ? "scrolls in its box" : "cut off");
  }
  for (const el of column.querySelectorAll("mjx-container[display='true'], mjx-container[display]")) {
    const box = el.parentElement;
    over("math", el, Math.max(el.scrollWidth - box.clientWidth, el.getBoundingClientRect().width - colWidth),
         "wider than the column");
  }
  for (const el of column.querySelectorAll("pre")) {
    if (el.id === "width-report") continue;
    over("code", el, el.scrollWidth - el.clientWidth, "scrolls sideways");
  }
  const out = document.createElement("pre");
  out.id = "width-report";
  out.textContent = JSON.stringify({column: colWidth, found});
  document.body.appendChild(out);
})();
</script>
"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    sys.exit("check_page_widths: no Chromium on PATH (Debian: apt-get install chromium); nothing checked")


def check(page: Path, width: int, browser: str) -> dict:
    """The report of one page at one window width: ``{"column": px, "found": [...]}``."""
    copy = page.with_name(f".width-check-{page.name}")
    source = page.read_text(encoding="utf-8")
    copy.write_text(source.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    try:
        with tempfile.TemporaryDirectory() as profile:
            dom = subprocess.run(
                [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", f"--window-size={width},900", "--virtual-time-budget=15000",
                 "--dump-dom", copy.as_uri()],
                capture_output=True, text=True, timeout=120).stdout
    finally:
        copy.unlink(missing_ok=True)
    match = re.search(r'<pre id="width-report"[^>]*>(.*?)</pre>', dom, re.S)  # the theme adds tabindex
    if not match:
        return {"column": None, "found": [{"kind": "page", "by": 0, "how": "the probe did not run", "text": ""}]}
    return json.loads(html.unescape(match.group(1)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html", help="the built book (make book)")
    parser.add_argument("--widths", type=int, nargs="+", default=[1280, 1024], help="window widths in px")
    parser.add_argument("--pages", nargs="+", default=["*.html", "notebooks/*.html"],
                        help="glob patterns under --html (default: every page)")
    parser.add_argument("--allow", nargs="*", default=[], choices=KINDS, help="kinds that warn but do not fail")
    args = parser.parse_args(argv)
    if not args.html.is_dir():
        parser.error(f"--html: no built book at {args.html}; run `make book` first")
    browser = chromium()
    pages = sorted({p for pattern in args.pages for p in args.html.glob(pattern)
                    if not p.name.startswith((".width-check-", "genindex", "search")) and p.name != "index.html"})  # index: a redirect
    if not pages:
        parser.error(f"--pages matched no page under {args.html}")
    failed = 0
    for page in pages:
        for width in args.widths:
            report = check(page, width, browser)
            for item in report["found"]:
                failed += item["kind"] not in args.allow
                print(f"{page.relative_to(args.html)} @{width}px: {item['kind']} +{item['by']} px "
                      f"({item['how']}): {item['text']!r}")
    print(f"{len(pages)} pages at {', '.join(f'{w} px' for w in args.widths)}: "
          f"{failed} elements wider than their box" + (f" (allowed: {', '.join(args.allow)})" if args.allow else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
