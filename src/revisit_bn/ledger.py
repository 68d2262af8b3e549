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
