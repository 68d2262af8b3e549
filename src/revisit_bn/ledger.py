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
    of the stored ``runs`` it read and the code fingerprint. When some of those runs ``diverged``,
    the verdict is recorded as ``"inconclusive: runs diverged"`` and the runs are named in ``measured``
    (a NaN never passes or fails a threshold silently).
    """
    from .results import code_fingerprint, write_json_atomic

    payload = {**dataclasses.asdict(verdict), "chapter": chapter, "verdict": verdict.verdict, "profile": profile,
               "params": params or {}, "runs": sorted(runs or []), "code": code_fingerprint()}
    if diverged:
        payload.update(reproduced=False, category="inconclusive", verdict="inconclusive: runs diverged",
                       measured=f"{verdict.measured}; diverged runs: {'; '.join(diverged)}")
    path = claims_dir(profile) / f"{verdict.claim_id}.json"
    write_json_atomic(path, payload)
    return path


def collect(profile: str = "book", directory: Path | None = None):
    """Every recorded verdict of ``profile`` as a :class:`pandas.DataFrame`, sorted by claim id (empty if none)."""
    import pandas as pd

    directory = directory or claims_dir(profile)
    rows = [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))] if directory.is_dir() else []
    columns = ["claim_id", "source", "claim", "measured", "scale", "verdict", "chapter", "seeds", "interval"]
    return pd.DataFrame(rows, columns=columns + [c for c in (rows[0] if rows else {}) if c not in columns])


def by_paper(ledger):
    """How many claims of each paper fall in each category: a :class:`pandas.DataFrame` with one row
    per paper (the work a claim's ``source`` names first, e.g. ``"Lian & Liu 2019"``, or ``"this book"``
    for the book's own claims; most claims first, ``"this book"`` last), one column per
    category of :data:`CATEGORIES` that occurs (in that order; a verdict such as ``"inconclusive:
    runs diverged"`` counts as its category) and a ``claims`` total.

    Args:
        ledger: recorded verdicts, as :func:`collect` gives them (columns ``source`` and ``verdict``).

    Raises:
        ValueError: a verdict outside :data:`CATEGORIES`.
    """
    import pandas as pd

    paper = ledger.source.str.extract(r"^(this book|[^,(]+?)\s*(?:,|\(|$)", expand=False)
    category = ledger.verdict.str.split(":").str[0]
    unknown = sorted(set(category) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"by_paper: verdicts {unknown} are not categories of claims.CATEGORIES; "
                         "record them with claims.record")
    counts = paper.value_counts()
    order = sorted(counts.index, key=lambda name: (name == "this book", -counts[name], name))
    table = pd.crosstab(pd.Categorical(paper, categories=order),
                        pd.Categorical(category, categories=[c for c in CATEGORIES if c in set(category)]))
    table.index.name, table.columns.name = "paper", None
    return table.assign(claims=table.sum(axis=1))


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
