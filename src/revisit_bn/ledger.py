"""The claims ledger: chapters record their verdicts here, the ledger chapter reads them, summaries glue them.

One JSON file per claim and profile (``results/<profile>/claims/<claim id>.json``), written atomically by the
chapter that tests the claim, with the parameters, the stored runs it read and the code fingerprint
(:func:`record`); :func:`collect` and :func:`by_paper` read them back; :func:`compare_scales` sets one claim's
verdicts at two scales side by side; :func:`glue_verdicts` and :func:`glue_rules` give a chapter's prose its
numbers (myst-nb's glue).
"""

from __future__ import annotations

import dataclasses
import json

from pathlib import Path

from .verdicts import CATEGORIES, Verdict, verdict_rules


def claims_dir(profile: str = "book") -> Path:
    """``<results root>/<profile>/claims``: one JSON file per claim, written by the chapter that tests it."""
    from .results import results_root

    return results_root(profile) / "claims"


def record(verdict: Verdict, chapter: str, profile: str = "book", params: dict | None = None,
           runs: list[str] | None = None, diverged: list[str] | None = None) -> Path:
    """Store ``verdict`` (atomically) for the ledger, with what made it.

    The record holds the notebook ``chapter``, the ``profile``, its parameters ``params``, the keys
    of the stored ``runs`` it read, the code fingerprint and the claim's ``parts``
    (:meth:`revisit_bn.verdicts.Verdict.part_list`). When some of those runs ``diverged``,
    the verdict is recorded as ``"inconclusive: runs diverged"`` and the runs are named in ``measured``
    (a NaN never passes or fails a threshold silently).
    """
    from .results import code_fingerprint, write_json_atomic

    if not isinstance(verdict, Verdict):
        raise ValueError(f"record: verdict must be a Verdict (verdicts.Verdict), got {type(verdict).__name__}")
    for name, keys in (("runs", runs), ("diverged", diverged)):
        if isinstance(keys, str) or (keys is not None and not all(isinstance(k, str) for k in keys)):
            raise ValueError(f"record: {name} must be a list of run keys (str), got {keys!r}")
    payload = {**dataclasses.asdict(verdict), "parts": verdict.part_list(), "chapter": chapter, "verdict": verdict.verdict,
               "profile": profile, "params": params or {}, "runs": sorted(runs or []), "code": code_fingerprint()}
    if diverged:
        payload.update(reproduced=False, category="inconclusive", verdict="inconclusive: runs diverged",
                       measured=f"{verdict.measured}; diverged runs: {'; '.join(diverged)}")
    path = claims_dir(profile) / f"{verdict.claim_id}.json"
    write_json_atomic(path, payload)
    return path


EXTENSIONS = "the book's extensions"  # the row of by_paper that counts the book's own readings and extensions


def collect(profile: str = "book", directory: Path | None = None):
    """Every recorded verdict of ``profile`` as a :class:`pandas.DataFrame`, sorted by claim id (empty if none),
    with the registry's ``paper``, ``kind`` (``"paper"`` or ``"extension"``) and ``rule`` (``""``, or what was
    changed after the runs: :attr:`revisit_bn.registry.Claim.changes`) beside each record."""
    import pandas as pd

    from .registry import CLAIMS

    directory = directory or claims_dir(profile)
    rows = [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))] if directory.is_dir() else []
    columns = ["claim_id", "source", "claim", "measured", "scale", "verdict", "chapter", "seeds", "interval"]
    frame = pd.DataFrame(rows, columns=columns + [c for c in (rows[0] if rows else {}) if c not in columns])
    registered = [CLAIMS.get(i) for i in frame.claim_id]
    frame["paper"] = [c.paper if c else "" for c in registered]
    frame["kind"] = [c.kind if c else "" for c in registered]
    frame["rule"] = [rule_changes(c) if c else "" for c in registered]
    return frame


def rule_changes(claim) -> str:
    """``""``, or ``"rule set after the runs: <what> (<commit>, <date>); ..."`` for a claim whose measure,
    threshold, gate, seeds or length changed after runs of it were stored."""
    if not claim.changes:
        return ""
    return "rule set after the runs: " + "; ".join(f"{c.what} ({c.commit}, {c.date})" for c in claim.changes)


def by_paper(ledger):
    """How many claims of each paper fall in each category, one row per claim of a paper, the book's own
    readings and extensions counted apart: a :class:`pandas.DataFrame` with one row per paper (its claims
    of kind ``"paper"`` in :mod:`revisit_bn.registry`; most claims first) and a last row
    :data:`EXTENSIONS` (every claim of kind ``"extension"``, whatever paper it extends), one column per
    category of :data:`CATEGORIES` that occurs (in that order; a verdict such as ``"inconclusive: runs
    diverged"`` counts as its category), ``claims`` (the total) and ``rule set after the runs`` (how many
    of them).

    Args:
        ledger: recorded verdicts, as :func:`collect` gives them (columns ``claim_id`` and ``verdict``).

    Raises:
        ValueError: a verdict outside :data:`CATEGORIES`, or a claim that is not registered.
    """
    import pandas as pd

    from .registry import CLAIMS

    unregistered = sorted(set(ledger.claim_id) - set(CLAIMS))
    if unregistered:
        raise ValueError(f"by_paper: claims {unregistered} are not registered in revisit_bn/registry.py")
    registered = [CLAIMS[i] for i in ledger.claim_id]
    paper = pd.Series([c.paper if c.kind == "paper" else EXTENSIONS for c in registered], index=ledger.index)
    category = ledger.verdict.str.split(":").str[0]
    unknown = sorted(set(category) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"by_paper: verdicts {unknown} are not categories of claims.CATEGORIES; "
                         "record them with claims.record")
    counts = paper.value_counts()
    order = sorted(counts.index, key=lambda name: (name == EXTENSIONS, -counts[name], name))
    table = pd.crosstab(pd.Categorical(paper, categories=order),
                        pd.Categorical(category, categories=[c for c in CATEGORIES if c in set(category)]))
    table.index.name, table.columns.name = "paper", None
    late = pd.Series([bool(c.changes) for c in registered], index=ledger.index).groupby(paper).sum()
    return table.assign(claims=table.sum(axis=1), **{"rule set after the runs": late.reindex(table.index).astype(int)})


def compare_scales(scales: dict[str, list[Verdict]]):
    """The same claims measured at several scales, one row per claim, as a :class:`pandas.DataFrame`.

    Args:
        scales: ``{scale label: verdicts}``, e.g. ``{"book (3 epochs)": book, "paper (20 epochs)": paper}``;
            a claim missing at one scale shows ``-`` there.

    Returns:
        Columns ``claim`` and, per scale, ``<label>: category`` and ``<label>: effect`` (the
        effect with its interval, ``-`` where the verdict has none); claims in first-seen order.
        Where no verdict at any scale has an interval (the mathematical checks), the effect
        columns are left out.

    Raises:
        ValueError: ``scales`` is empty.
    """
    import pandas as pd

    if not scales:
        raise ValueError("scales must name at least one scale and its verdicts, e.g. {'book': verdicts}")
    ids = list(dict.fromkeys(v.claim_id for verdicts in scales.values() for v in verdicts))
    table = pd.DataFrame({"claim": ids})
    for label, verdicts in scales.items():
        by_id = {v.claim_id: v for v in verdicts}
        table[f"{label}: category"] = [by_id[i].category if i in by_id else "-" for i in ids]
        table[f"{label}: effect"] = [(by_id[i].interval or "-") if i in by_id else "-" for i in ids]
    if not any(v.interval for verdicts in scales.values() for v in verdicts):
        table = table.drop(columns=[c for c in table.columns if c.endswith(": effect")])
    return table


def glue_rules() -> None:
    """Glue :func:`verdict_rules` as ``verdict_rules`` (Markdown), once per chapter, for the note that
    chapters with experimental verdicts print under them (``{glue:md}`verdict_rules```)."""
    from IPython.display import Markdown
    from myst_nb import glue

    glue("verdict_rules", Markdown(verdict_rules()), display=False)


def glue_verdicts(verdicts, prefix: str = "") -> None:
    """Glue each verdict's category (``<id>_category``, bold Markdown), its effect with interval
    (``<id>_interval``) and seed count (``<id>_seeds``) for a chapter's summary; ``<id>`` is
    ``prefix`` (e.g. ``"paper_"`` for another profile's verdicts) and the claim id with ``-`` and
    ``.`` replaced by ``_``. Summaries quote them with ``{glue:md}`` and ``{glue:text}``, so their
    words follow the stored outputs."""
    from IPython.display import Markdown
    from myst_nb import glue

    for verdict in verdicts:
        key = prefix + verdict.claim_id.replace("-", "_").replace(".", "_")
        glue(f"{key}_category", Markdown(f"**{verdict.category}**"), display=False)
        glue(f"{key}_interval", Markdown(verdict.interval or "no interval"), display=False)
        glue(f"{key}_seeds", verdict.seeds, display=False)


def reason(verdict: str, measured: str, parts: list | None = None, threshold: str = "") -> str:
    """Why a verdict is not a plain *reproduced* (or *holds*), in a few words, for the ledger's row
    (``""`` for those): the rule that moved it (one epoch less, half of the probes, one more seed), the
    learnability gates that failed, the parts' categories of a claim of several parts, or where the
    interval lies against the ``threshold``.

    Args:
        verdict: the recorded verdict (``"inconclusive"``, ``"inconclusive: runs diverged"``, ...).
        measured: the record's ``measured`` text, which names the gates and the rules that fired.
        parts: the record's ``parts`` (dicts with ``name`` and ``category``).
        threshold: the claim's registered threshold (:attr:`revisit_bn.registry.Claim.threshold`).
    """
    import re

    if not isinstance(verdict, str) or verdict.split(":")[0] not in CATEGORIES:
        raise ValueError(f"verdict must be a recorded verdict, one of {list(CATEGORIES)} (optionally followed by "
                         f"': why'), got {verdict!r}")
    if not isinstance(measured, str):
        raise ValueError(f"measured must be the record's measured text (a str), got {type(measured).__name__}")
    if parts is not None and (not isinstance(parts, list) or not all(isinstance(p, dict) and "category" in p
                                                                      for p in parts)):
        raise ValueError(f"parts must be the record's parts, a list of dicts with a 'category', got {parts!r}")
    category = verdict.split(":")[0]
    if category in ("reproduced", "holds as printed"):
        return ""
    why = []
    if ":" in verdict:
        why.append(verdict.split(":", 1)[1].strip())
    for rule, words in (("the training length decides", "one epoch less changes it (training-length rule)"),
                        ("the probe schedule decides", "half of the probes change it (probe-schedule rule)"),
                        ("one more seed", "one more seed like the least favourable changes it")):
        if rule in measured:
            why.append(words)
    failed = re.findall(r"gate: ([^;()]+?) [-+\d.,]+ \([^()]*failed\)", measured)
    why += [f"gate failed: {name}" for name in dict.fromkeys(failed)]
    counted = [p["category"] for p in parts or [] if not p.get("vacuous")]
    if len(counted) > 1:
        tally = {c: counted.count(c) for c in CATEGORIES if c in counted}
        why.append(f"{len(counted)} parts: " + ", ".join(f"{n} {c}" for c, n in tally.items()))
    if not why:
        side = {"inconclusive": "the interval straddles the threshold",
                "contradicted": "the interval lies on the other side of the threshold",
                "holds as corrected": "holds once corrected", "false as printed": "a counterexample"}
        why.append(side.get(category, category) + (f" ({threshold})" if threshold and category in
                                                    ("inconclusive", "contradicted") else ""))
    return "; ".join(why)


def table_html(ledger, paper_ledger=None) -> str:
    """The ledger's table as HTML, one row per claim grouped by category, four columns that fit the
    text column at 1024 px: the verdict (the chapters' badge, and why it is not *reproduced*:
    :func:`reason`); the claim (id, source, words, a link to the chapter, the rule's changes after
    the runs, and folded: what was measured, at which scale); the effect (interval, with the claim's
    measure and threshold, seeds and stored runs); the claim at the chapter's ``paper`` profile.
    Each row has the anchor ``claim-<id>``.

    Args:
        ledger: :func:`collect`'s frame for the book profile.
        paper_ledger: :func:`collect`'s frame for the ``paper`` profile (``None``: that column is left out).
    """
    from html import escape

    from .experiments import CHAPTERS
    from .registry import CLAIMS, paper_setting
    from .verdicts import badge

    import pandas as pd

    needed = {"claim_id", "source", "claim", "measured", "scale", "verdict", "chapter", "seeds", "interval", "runs",
              "kind", "rule"}
    for name, frame in (("ledger", ledger), ("paper_ledger", paper_ledger)):
        if frame is None and name == "paper_ledger":
            continue
        if not isinstance(frame, pd.DataFrame) or (len(frame) and needed - set(frame.columns)):
            missing = sorted(needed - set(frame.columns)) if isinstance(frame, pd.DataFrame) else "all"
            raise ValueError(f"{name} must be a frame of recorded verdicts as collect() gives them; "
                             f"missing columns: {missing}")
    if any(not isinstance(v, str) for v in ledger.verdict):
        raise ValueError("ledger: every row needs its verdict as text; a missing one (NaN) means a damaged record")
    unknown = sorted(set(ledger.chapter) - set(CHAPTERS)) if len(ledger) else []
    if unknown:
        raise ValueError(f"ledger names chapters {unknown} that have no spec in revisit_bn.chapters")
    paper_by_id = {row.claim_id: row for row in paper_ledger.itertuples()} if paper_ledger is not None else {}

    def folded(summary: str, body: str) -> str:
        return f"<details><summary>{summary}</summary><small>{body}</small></details>"

    def paper_cell(claim_id: str, chapter: str) -> str:
        setting = folded("the paper's setting", escape(paper_setting(claim_id)))
        row = paper_by_id.get(claim_id)
        if row is None:  # a chapter without stored runs decides its statements exactly: no scale to raise
            return ("exact at any scale" if CHAPTERS[chapter].grid is None else "not stored") + setting
        interval = f"<br><small>{escape(row.interval)}</small>" if row.interval else ""
        anchor = f"paper-scale-{chapter.split('-')[0]}"  # the chapter's section on its paper profile
        return (f'<a href="{chapter}.html#{anchor}">{badge(row.verdict)}</a>{interval}'
                + folded("its scale", escape(row.scale)) + setting)

    rank = {c: i for i, c in enumerate(CATEGORIES)}
    ordered = ledger.assign(rank=ledger.verdict.map(lambda v: rank.get(v.split(":")[0], len(rank))))
    rows = []
    for r in ordered.sort_values(["rank", "claim_id"]).itertuples():
        claim = CLAIMS.get(r.claim_id)
        threshold = claim.threshold if claim else ""
        parts = r.parts if isinstance(getattr(r, "parts", None), list) else []
        why = reason(r.verdict, r.measured, parts, threshold)
        verdict_cell = badge(r.verdict) + (f"<br><small>{escape(why)}</small>" if why else "")
        chapter = f'<a href="{r.chapter}.html#verdict-{r.claim_id}">chapter {r.chapter.split("-")[0]}</a>'
        extension = "; <i>the book's extension</i>" if r.kind == "extension" else ""
        rule = f"<br><small><b>{escape(r.rule)}</b></small>" if r.rule else ""
        claim_cell = (f"<b>{escape(r.claim_id)}</b> ({chapter})<br><small>{escape(r.source)}{extension}</small>"
                      f"{rule}<br>{escape(r.claim)}"
                      + folded("measured, scale", f"{escape(r.measured)}<br><i>Scale:</i> {escape(r.scale)}"))
        seeds = f"{int(r.seeds)} seeds, " if r.seeds == r.seeds and r.seeds else ""
        rule_text = "; ".join(x for x in (f"measure: {claim.measure}" if claim else "",
                                          f"threshold: {threshold}" if threshold else "") if x)
        runs = f"{len(r.runs)} stored run" + ("" if len(r.runs) == 1 else "s")
        behind = f"{seeds}{runs}" if len(r.runs) else "exact computation, no stored runs"
        effect_cell = (escape(r.interval) if isinstance(r.interval, str) and r.interval else "-") + (
            f"<br><small>{escape(behind)}</small>"
            + (folded("measure, threshold", escape(rule_text)) if rule_text else ""))
        cells = [verdict_cell, claim_cell, effect_cell] + ([paper_cell(r.claim_id, r.chapter)] if paper_by_id else [])
        rows.append(f'<tr id="claim-{escape(r.claim_id)}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    heads = ["verdict, and why", "claim", "effect [95 % interval]"] + (["paper profile"] if paper_by_id else [])
    return ('<table class="ledger"><thead><tr>' + "".join(f"<th>{h}</th>" for h in heads)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
