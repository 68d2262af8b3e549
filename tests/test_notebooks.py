"""Notebooks as papermill runs them: parameters from the chapter specs, profiles, bad input.

(nbval, run by ``make test`` over ``notebooks/``, re-executes the stored notebooks against the
committed results store and compares their outputs; these tests cover what nbval cannot:
injected parameters and the other profiles.)
"""

import ast
import json
import re
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from revisit_bn import experiments
from revisit_bn.experiments import CHAPTERS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


def _execute(nb: Path, out: Path, **kwargs):
    return pm.execute_notebook(str(nb), str(out), cwd=str(nb.parent), progress_bar=False, kernel_name="python3", **kwargs)


def _parameters_cell(nb: Path):
    cells = nbformat.read(nb, as_version=4).cells
    tagged = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    return tagged[0].source


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_lists_exactly_the_specs_parameters_as_literals(nb):
    source = _parameters_cell(nb)
    assigned = {}
    for line in source.splitlines():
        code = line.split("#")[0].strip()
        if not code:
            continue
        assert "(" not in code and not code.startswith(("import", "from")), line  # literals only
        name, value = (part.strip() for part in code.split("=", 1))
        assigned[name] = value
    spec = CHAPTERS[nb.stem]
    assert list(assigned) == ["profile", "recompute", *spec.parameters]
    assert assigned["profile"] == '"book"' and assigned["recompute"] == "False"
    assert all(assigned[name] == "None" for name in spec.parameters)  # None: the profile's value, from the spec


def _commented_book_value(comment: str):
    """The literal after ``book profile:`` in a parameter's comment (the longest prefix that parses),
    e.g. ``[0, 1, 2]`` from ``book profile: [0, 1, 2] (5 seeds)``."""
    rest = comment.split("book profile:", 1)[1].strip()
    cuts = sorted({len(rest)} | {i for i in range(len(rest)) if rest.startswith((" (", ", ", "; ", " -"), i)}, reverse=True)
    for cut in cuts:
        try:
            return ast.literal_eval(rest[:cut])
        except (ValueError, SyntaxError):
            continue
    raise AssertionError(f"no literal after 'book profile:' in {comment!r}")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameter_comments_state_the_specs_book_values(nb):
    # a reader sees these comments first; a promoted profile (3 -> 10 epochs) must not leave them behind
    book = CHAPTERS[nb.stem].profiles["book"]
    above: list[str] = []  # a comment may sit on the lines above its parameter (code lines fit 88 columns)
    for line in _parameters_cell(nb).splitlines():
        code, _, comment = line.partition("#")
        if not code.strip():
            above.append(comment.strip())
            continue
        comment, above = comment or " ".join(above), []
        name = code.split("=")[0].strip()
        if name in book:
            assert "book profile:" in comment, f"{nb.stem}: {name}'s comment does not state its book value"
            assert _commented_book_value(comment) == book[name], f"{nb.stem}: {line!r} but the spec's book value is {book[name]!r}"


@pytest.mark.parametrize("name", list(CHAPTERS))
def test_every_profile_of_every_spec_resolves_to_valid_runs(name):
    spec = CHAPTERS[name]
    assert {"ci", "book", "paper"} <= set(spec.profiles) <= {"ci", "book", "paper", "next"}  # next: a book scale being computed
    for profile in spec.profiles:
        assert list(spec.profiles[profile]) == list(spec.parameters)
        configs = spec.configs(profile)  # every TrainConfig validates on construction
        assert bool(configs) == (spec.grid is not None)


BAD = [
    ({"seeds": 3}, "seeds must be list"),
    ({"sgd_momentum": "0.9"}, "sgd_momentum must be float or int"),
    ({"colour": "red"}, "unknown parameter\\(s\\) colour"),
    ({"profile": "fast"}, "profile must be one of"),
    ({"device": "meta"}, "cannot train"),
]


def test_bad_parameter_stops_the_notebook_at_setup_with_a_clear_message(tmp_path, results_root):
    nb = ROOT / "notebooks" / "31-mnist-batch-construction.ipynb"
    bad, message = BAD[0]
    with pytest.raises(pm.PapermillExecutionError) as err:
        _execute(nb, tmp_path / "out.ipynb", parameters=bad)
    assert err.value.ename == "ValueError" and re.search(message, err.value.evalue), err.value.evalue
    assert "experiments.setup(" in err.value.source  # the setup cell stopped it, before any training
    assert not results_root.exists() or not any(results_root.rglob("*.json*"))


@pytest.mark.parametrize("bad,message", BAD, ids=[next(iter(b)) for b, _ in BAD])
def test_every_bad_parameter_is_refused_by_the_setup_cell(bad, message, results_root):
    # what the notebook runs, in this process (a kernel start each would cost seconds; the test above
    # runs one through papermill): its parameters cell, papermill's injected values, then its setup cell
    nb = ROOT / "notebooks" / "31-mnist-batch-construction.ipynb"
    setup = [c.source for c in nbformat.read(nb, as_version=4).cells
             if c.cell_type == "code" and "experiments.setup(" in c.source][0]
    namespace: dict = {}
    exec(_parameters_cell(nb), namespace)
    namespace.update(bad)
    call = re.search(r"experiments\.setup\((.*)\)", setup).group(1)
    assert call == '"31-mnist-batch-construction", globals()', call
    with pytest.raises(ValueError, match=message):
        experiments.setup("31-mnist-batch-construction", namespace)
    assert not results_root.exists() or not any(results_root.rglob("*.json*"))


def test_a_missing_run_stops_the_notebook_naming_make_results(tmp_path, results_root):
    nb = ROOT / "notebooks" / "33-large-variance.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as err:
        _execute(nb, tmp_path / "out.ipynb")
    assert err.value.ename == "MissingRunsError" and "make results" in err.value.evalue
    assert "nothing was trained" in err.value.evalue and not any(results_root.rglob("*.json*"))


def test_recompute_retrains_and_stores(tmp_path, results_root):
    nb = ROOT / "notebooks" / "33-large-variance.ipynb"
    _execute(nb, tmp_path / "out.ipynb",
             parameters={"recompute": True, "epochs": 1, "seeds": [0], "lrs": [0.01, 0.1], "variance_lrs": [0.01]})
    # 3 methods x 2 step sizes on the book's data, x 1 step size on each of the 2 other spreads (section 5)
    assert len(list((results_root / "book" / "large_variance").glob("*.json.gz"))) == 3 * 2 + 2 * 3 * 1


# a chapter whose ci profile is its book profile and that trains nothing runs at ci exactly as nbval runs it
SAME_AT_CI = [nb for nb in NOTEBOOKS if CHAPTERS[nb.stem].profiles["ci"] == CHAPTERS[nb.stem].profiles["book"]]


def test_a_chapter_skipped_at_ci_is_the_one_nbval_runs():
    assert [nb.stem for nb in SAME_AT_CI] == ["91-how-computed"]
    for nb in SAME_AT_CI:
        assert not CHAPTERS[nb.stem].configs("ci") and not CHAPTERS[nb.stem].claims


@pytest.mark.parametrize("nb", [nb for nb in NOTEBOOKS if nb not in SAME_AT_CI], ids=lambda p: p.stem)
def test_ci_profile_runs_end_to_end(nb, tmp_path, results_root):
    out = tmp_path / "out.ipynb"
    _execute(nb, out, parameters={"profile": "ci"})
    cells = nbformat.read(out, as_version=4).cells
    text = json.dumps(cells)
    assert "Profile 'ci'" in text
    spec = CHAPTERS[nb.stem]
    for claim_id in spec.claims:
        assert f"[{claim_id}]" in text
    from revisit_bn.results import stored_runs

    assert len(stored_runs(results_root / "ci")) == len(spec.configs("ci"))  # every run trained and stored once


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_numbers_quoted_in_any_markdown_cell_are_printed_by_the_notebook(nb):
    # The prose is typed; a measured number in it (two decimals or more) must be one of the stored outputs
    # (nbval keeps those current) or glued from them ({glue:text}, which the source does not spell out)
    cells = nbformat.read(nb, as_version=4).cells
    printed = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") + o.get("data", {}).get("text/html", "")
                      for c in cells if c.cell_type == "code" for o in c.outputs)
    prose = "".join(c.source for c in cells if c.cell_type == "markdown")
    quoted = re.findall(r"(?<![\d.])-?\d+\.\d{2,}(?!\d)", prose)
    assert not [n for n in quoted if n not in printed], f"numbers in the prose of {nb.stem} not in its outputs"


PROGRESS = re.compile(r"(it|epoch|step)/s\]|s/(it|epoch|step)\]|\| *\d+/\d+ \[|\d+%\|")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_outputs_hold_no_progress_bar_and_no_line_wider_than_the_output_box(nb):
    from revisit_bn.plots import OUTPUT_WIDTH

    for cell in nbformat.read(nb, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            data = output.get("data", {})
            # What the book shows as text: streams, and plain text without an HTML or image form.
            shown = output.get("text", "") if output.output_type == "stream" else (
                data.get("text/plain", "") if not ({"text/html", "image/png", "text/markdown"} & set(data)) else "")
            assert not PROGRESS.search(shown), f"{nb.stem}: a progress bar in the stored outputs"
            wide = [line for line in shown.splitlines() if len(line) > OUTPUT_WIDTH]
            assert not wide, f"{nb.stem}: {len(wide)} output lines wider than {OUTPUT_WIDTH} characters: {wide[0]!r}"
        assert "nbval-ignore-output" not in cell.source and "nbval-ignore-output" not in cell.metadata.get("tags", [])


CODE_WIDTH = 88  # characters: a code cell's line fits the book's column at 1280 px without scrolling


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_figures_are_256_colour_pngs(nb):
    # plots.figure_png: a third of a full-colour PNG's bytes, so the working tree stays small
    import base64
    import io

    from PIL import Image

    for cell in nbformat.read(nb, as_version=4).cells:
        for output in cell.get("outputs", []):
            for mime in ("image/png", "application/papermill.record/image/png"):
                if mime in output.get("data", {}):
                    image = Image.open(io.BytesIO(base64.b64decode(output["data"][mime])))
                    assert image.mode == "P", f"{nb.name}: a figure stored in {image.mode}; re-execute it"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_lines_fit_the_column(nb):
    # 126 of 145 visible code cells scrolled sideways, with lines up to 144 characters
    wide = [(i, line) for i, cell in enumerate(nbformat.read(nb, as_version=4).cells) if cell.cell_type == "code"
            for line in cell.source.splitlines() if len(line) > CODE_WIDTH]
    assert not wide, (f"{nb.stem}: {len(wide)} code lines wider than {CODE_WIDTH} characters, first in cell "
                      f"{wide[0][0]}: {wide[0][1]!r}")


THEORY = [nb for nb in NOTEBOOKS if nb.stem[:2] in ("11", "12", "13", "14", "15")]


def test_the_theory_chapters_print_the_same_on_another_cpus_kernels(tmp_path):
    # A printed number at rounding-error level differs between CPUs (chapter 12 once printed 9e-16 on one
    # and 1e-15 on another): run nbval over the theory chapters with torch's kernels for AVX2 and MKL's for
    # AVX2 (this machine's are AVX-512 or other), so that another CPU's sums are taken, and compare
    import os
    import subprocess
    import sys

    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", "--nbval-current-env",
            "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"), *map(str, THEORY)]
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:]
    assert len(THEORY) == 5 and " passed" in done.stdout
