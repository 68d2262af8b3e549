"""Notebooks as papermill runs them: parameters, profiles, bad input.

(nbval, run by ``make test`` over ``notebooks/``, re-executes the stored notebooks and compares
their outputs; these tests cover what nbval cannot: injected parameters.)
"""

import json
from pathlib import Path

import nbformat
import papermill as pm
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


def _execute(nb: Path, out: Path, **kwargs):
    return pm.execute_notebook(str(nb), str(out), cwd=str(nb.parent), progress_bar=False, kernel_name="python3", **kwargs)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_one_literal_parameters_cell_and_profiles(nb):
    cells = nbformat.read(nb, as_version=4).cells
    tagged = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for line in tagged[0].source.splitlines():  # literals only: no calls, no imports
        assert "(" not in line.split("#")[0] and not line.startswith(("import", "from")), line
    names = {line.split("=")[0].strip() for line in tagged[0].source.splitlines() if "=" in line}
    for profile in ("paper", "ci"):
        params = yaml.safe_load((ROOT / "notebooks" / "params" / f"{nb.stem}.{profile}.yaml").read_text())
        assert set(params) <= names, f"{profile} profile sets unknown parameters {set(params) - names}"
        assert params["profile"] == profile


@pytest.mark.parametrize("bad,message", [({"batch_size": -64}, "batch_size must be a positive integer"),
                                          ({"norms": ["bn", "layernorm"]}, "unknown norm 'layernorm'")])
def test_bad_parameter_stops_the_notebook_with_a_clear_message(bad, message, tmp_path):
    nb = ROOT / "notebooks" / "31-mnist-batch-construction.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as err:
        _execute(nb, tmp_path / "out.ipynb", parameters=bad)
    assert err.value.ename == "ValueError" and message in err.value.evalue


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_ci_profile_runs_end_to_end(nb, tmp_path, results_root):
    params = yaml.safe_load((ROOT / "notebooks" / "params" / f"{nb.stem}.ci.yaml").read_text())
    out = tmp_path / "out.ipynb"
    _execute(nb, out, parameters=params)
    cells = nbformat.read(out, as_version=4).cells
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in cells)
    text = json.dumps(cells)
    if nb.stem == "31-mnist-batch-construction":
        assert "[lian-fig4]" in text and "[lian-fig7]" in text
        assert len(list((results_root / "mnist_batch_construction").glob("*.json"))) == 4


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_numbers_quoted_in_a_summary_are_printed_by_the_notebook(nb):
    # The prose is typed; its numbers must be the stored outputs' (nbval keeps those current).
    import re

    cells = nbformat.read(nb, as_version=4).cells
    printed = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                      for c in cells if c.cell_type == "code" for o in c.outputs)
    summary = "".join(c.source for c in cells if c.cell_type == "markdown" and c.source.startswith("## Summary"))
    quoted = re.findall(r"(?<![\d.])-?\d+\.\d{2,}(?!\d)", summary)
    assert not [n for n in quoted if n not in printed], f"numbers in the summary of {nb.stem} not in its outputs"
