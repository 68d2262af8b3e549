"""The book builds from the stored notebooks with warnings as errors, and its HTML is offline-complete."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run(
        [str(jb), "build", "book", "--path-output", str(out), "-W", "-n", "--keep-going"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out / "_build" / "html"


def test_book_builds_without_warnings_and_holds_every_chapter(html):
    chapter = html / "notebooks" / "31-mnist-batch-construction.html"
    assert (html / "intro.html").is_file() and (html / "fn-and-mcsgd.html").is_file()
    text = chapter.read_text()
    assert "reproduced" in text.lower()  # the verdict lines are rendered
    images = list((html / "_images").glob("*.png"))
    assert images, "the chapter's figure was not rendered"
    assert "lian2019revisit" not in text  # citations resolved, not left as raw keys
    theory = (html / "theory.html").read_text()
    assert theory.count('class="proof') >= 6  # the sphinx-proof statements are rendered
    assert "santurkar-thm41" in (html / "notebooks" / "12-bn-gradient-hessian.html").read_text()  # linked


# A script, style sheet, font or image from another host, in markup or in CSS.
REMOTE_ASSET = re.compile(r"""<(?:script|img|iframe)\b[^>]*\bsrc=["'](?:https?:)?//|"""
                          r"""<link\b(?=[^>]*\brel=["'](?:stylesheet|preload|modulepreload|icon|font)["'])[^>]*\bhref=["'](?:https?:)?//""")
CSS_REMOTE = re.compile(r"""(?:url\(\s*["']?|@import\s+["'])(?:https?:)?//""")
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S)


def test_no_page_loads_anything_from_another_host(html):
    pages = sorted(html.rglob("*.html"))
    assert len(pages) > 15
    offenders = []
    for page in pages:
        text = page.read_text()
        offenders += [f"{page.name}: {m.group(0)[:120]}" for m in REMOTE_ASSET.finditer(text)]
        offenders += [f"{page.name}: inline script names {m.group(1).strip()[:120]}"
                      for m in INLINE_SCRIPT.finditer(text) if re.search(r"https?://", m.group(1))]
        assert "x-thebe-config" not in text, f"{page.name} declares a thebe configuration"
    for sheet in html.rglob("*.css"):
        offenders += [f"{sheet.name}: {m.group(0)}" for m in CSS_REMOTE.finditer(sheet.read_text())]
    assert not offenders, "\n".join(offenders[:20])


def test_math_is_served_from_the_books_own_static_files(html):
    theory = (html / "theory.html").read_text()
    assert '<script defer="defer" src="_static/mathjax/tex-chtml.js"></script>' in theory
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    fonts = list((html / "_static" / "mathjax").rglob("*.woff"))
    assert fonts, "MathJax's fonts are not in the build"


# A LaTeX command written with a doubled backslash (``$\\alpha_k$`` in a cell's source): MathJax reads
# ``\\`` as a line break and shows "alphak". The stored sources are checked, since the HTML no longer shows it.
DOUBLED_COMMAND = re.compile(r"\$[^$]*\\\\[A-Za-z,;!][^$]*\$")


def test_math_in_prose_uses_single_backslashes():
    import nbformat

    sources = {p.name: p.read_text() for p in (ROOT / "book").glob("*.md")}
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        for k, cell in enumerate(nbformat.read(nb, as_version=4).cells):
            if cell.cell_type == "markdown":
                sources[f"{nb.name} cell {k}"] = cell.source
    assert len(sources) > 20
    bad = {where: m.group(0) for where, text in sources.items() for m in [DOUBLED_COMMAND.search(text)] if m}
    assert not bad, bad


def test_every_notebook_is_in_the_table_of_contents():
    import yaml

    toc = (ROOT / "_toc.yml").read_text()
    listed = set(re.findall(r"notebooks/([\w\-]+)", toc))
    stored = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert stored and stored == listed
    assert yaml.safe_load(toc)["root"] == "intro"


def test_statement_boxes_carry_the_papers_numbers_and_chapters_their_own(html):
    theory = (html / "theory.html").read_text()
    assert "Santurkar et al. 4.1:" in theory and "Santurkar et al. 4.2:" in theory and "Fact C.1" in theory
    assert not re.search(r'caption-number">(Theorem|Lemma|Definition|Proposition) \d', theory)  # no "Theorem 1"
    ch12 = (html / "notebooks" / "12-bn-gradient-hessian.html").read_text()
    assert re.search(r'href="\.\./theory\.html#santurkar-thm41"[^>]*>(<[^>]+>)*Theorem 4\.1', ch12)
    for page in (html / "notebooks").glob("[0-9]*.html"):
        title = re.search(r"<h1>(.*?)<", page.read_text()).group(1)
        assert title.startswith(page.stem.split("-")[0] + ". "), title


def test_chapter_titles_hold_no_math():
    # a title is also the sidebar's and the previous/next links' text, where MathJax does not typeset:
    # "$\ell_p$ normalization" showed there as "\(\ell_p\) normalization"
    import nbformat

    titles = {nb.stem: nbformat.read(nb, as_version=4).cells[0].source.splitlines()[0]
              for nb in (ROOT / "notebooks").glob("*.ipynb")}
    assert all(title.startswith("# ") for title in titles.values()), titles
    assert not {stem: title for stem, title in titles.items() if "$" in title or "\\(" in title}


def _markdown(nb):
    import nbformat

    return [c.source for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "markdown"]


CITE = re.compile(r"\{cite(?::[pt])?\}`([^`]+)`")


def test_a_chapter_cites_the_paper_it_reproduces_and_lists_every_work_it_cites():
    # chapter 37's lead cited Lian & Liu for Batch Renorm, and its References listed only Lian & Liu
    cited_by = lambda text: {k.strip() for keys in CITE.findall(text) for k in keys.split(",")}  # noqa: E731
    bib = set(re.findall(r"@\w+\{([^,]+),", (ROOT / "book" / "references.bib").read_text()))
    wrong = {}
    for nb in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
        cells = _markdown(nb)
        parts = "\n".join(cells).split("## References")
        assert len(parts) == 2, f"{nb.stem}: one '## References' section, at the end"
        body, listed = cited_by(parts[0]), cited_by(parts[1])
        lead = re.match(r"# .*\n+Reproduces ([A-Z][a-z]+)\b.*?\((\d{4})\)", cells[0])
        paper = {k for k in bib if lead and k.startswith(lead.group(1).lower() + lead.group(2))}
        problems = {"unknown keys": sorted((body | listed) - bib), "cited, not listed": sorted(body - listed),
                    "the reproduced paper, not listed": sorted(paper) if paper and not paper & listed else []}
        if lead and not paper:
            problems["no bib entry for the lead's paper"] = [lead.group(0)]
        problems = {k: v for k, v in problems.items() if v}
        if problems:
            wrong[nb.stem] = problems
    assert not wrong, wrong


def test_the_intro_names_every_stored_verdict_and_gate_the_one_more_seed_rule_changes():
    # the intro says which verdict parts the rule turned inconclusive; the stored verdicts must agree
    import json

    from revisit_bn import claims, verdicts

    note = claims.flip_note([0.0645, 0.2966, 0.4278, 0.3223, 0.2495], 0.1).strip(" ()")
    stored = [json.loads(p.read_text()) for p in (ROOT / "results").glob("*/claims/*.json")]
    marked = sorted(v["claim_id"] for v in stored if note in v["measured"])
    assert marked == [], marked
    intro = re.sub(r"\s+", " ", (ROOT / "book" / "intro.md").read_text())
    assert "In the stored book the one-more-seed rule changes no verdict part" in intro
    # the gates' rule: the intro says it fails no gate of the stored book; a gate it failed would say so in its verdict
    narrow = verdicts._narrow(claims.gate([0.9, 0.95, 1.55], claims.TRAIN_GATE_NATS, below=True)).split(" with ")[1]
    assert narrow == "one more seed like its worst, failed"
    assert [v["claim_id"] for v in stored if narrow in v["measured"]] == []
    assert "In the stored book this rule fails no gate" in intro
    # a side condition (comparable training losses) is a part of its own: every Figure 4 verdict lists it
    fig4 = [v for v in stored if v["claim_id"].startswith("lian-fig4") and v["claim_id"] not in ("lian-fig4-vs-none",
                                                                                                  "lian-fig4-mechanism")]
    assert fig4 and all([p["name"] for p in v["parts"]] == ["BN's test loss far above FN's", "training objectives "
                                                             "comparable"] for v in fig4)
    assert "A side condition of a claim, such as comparable training losses in Figure 4, is a part judged the same " \
           "way" in intro
    # the training-length rule: the intro names the six book verdicts it makes inconclusive
    ruled = sorted(v["claim_id"] for v in stored if v["profile"] == "book" and "the training length decides" in
                   v["measured"] and v["category"] == "inconclusive")
    assert ruled == ["ioffe-noniid", "lian-fig3", "lian-fig5-b32-decoupled", "lian-fig9", "santurkar-fig2",
                     "wu-he-gn-batch2"], ruled
    assert "The rule changes six verdicts of the book profile to inconclusive" in intro


def test_every_chapter_with_experimental_verdicts_prints_how_they_are_decided(html):
    # the "every gate, threshold and interval rule is printed in its chapter": the thresholds and gates are in
    # each verdict line; the interval, category, one-more-seed and gate rules in a note under the verdicts
    import json

    from revisit_bn import claims
    from revisit_bn.experiments import CHAPTERS

    stored = [json.loads(p.read_text()) for p in (ROOT / "results" / "book" / "claims").glob("*.json")]
    mathematical = {"holds as printed", "holds as corrected", "false as printed"}
    experimental = {v["chapter"] for v in stored if v["category"] not in mathematical}
    assert experimental and experimental <= set(CHAPTERS)
    rule = f"{claims.CONFIDENCE * 100:g} % t-interval over the seeds"
    assert rule in claims.verdict_rules()
    missing = []
    for chapter in sorted(experimental):
        page = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", (html / "notebooks" / f"{chapter}.html").read_text()))
        if "How these verdicts are decided" not in page or rule not in page or "one more seed like the worst" not in page:
            missing.append(chapter)
    assert not missing, f"chapters without the rules under their verdicts: {missing}"


def test_every_link_of_the_ledger_reaches_its_anchor(html):
    # the ledger's rows link to each claim's chapter and to the chapter's section on its paper profile
    # (`paper-scale-NN`) in raw HTML, which the -W build does not check
    ledger = html / "notebooks" / "90-claims-ledger.html"
    links = set(re.findall(r'href="([0-9][^"#]*\.html)#([^"]+)"', ledger.read_text()))
    assert any(anchor.startswith("paper-scale-23") for _, anchor in links), "no link to chapter 23's paper section"
    broken = [f"{page}#{anchor}" for page, anchor in sorted(links)
              if not (html / "notebooks" / page).is_file()
              or f'id="{anchor}"' not in (html / "notebooks" / page).read_text()]
    assert not broken, f"ledger links whose anchor is missing: {broken}"
