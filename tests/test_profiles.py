"""The `paper` profiles (the papers' scale, meant for a GPU) are well formed: every configuration a
training chapter would run at that scale builds its model and takes one real SGD step on CPU."""

from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient
from papermill.parameterize import parameterize_notebook

ROOT = Path(__file__).resolve().parents[1]
TRAINING = [nb for nb in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
            if any("setup" in c.metadata.get("tags", []) for c in nbformat.read(nb, as_version=4).cells)]

CHECK = """
import math
from revisit_bn.train import smoke_step

steps = {}
for cfg in configs:  # one step per distinct model/norm/data/batch shape (seeds only change the draws)
    key = (cfg.dataset, cfg.model, cfg.norm, cfg.batch_size, cfg.batch_order, cfg.norm_group_size)
    if key not in steps:
        steps[key] = smoke_step(cfg)
assert steps and all(math.isfinite(v) for v in steps.values()), steps
print(f"SMOKE {len(configs)} configurations, {len(steps)} distinct, all finite")
"""


def test_every_training_chapter_is_checked():
    assert {nb.stem for nb in TRAINING} >= {"31-mnist-batch-construction", "35-cifar-batch-construction"}


@pytest.mark.parametrize("nb", TRAINING, ids=lambda p: p.stem)
def test_paper_profile_builds_every_model_and_takes_one_step(nb, results_root):
    params = yaml.safe_load((ROOT / "notebooks" / "params" / f"{nb.stem}.paper.yaml").read_text())
    notebook = nbformat.read(nb, as_version=4)
    setup = next(i for i, c in enumerate(notebook.cells) if "setup" in c.metadata.get("tags", []))
    notebook.cells = notebook.cells[: setup + 1]
    notebook = parameterize_notebook(notebook, params)
    notebook.cells.append(nbformat.v4.new_code_cell(CHECK))
    NotebookClient(notebook, kernel_name="python3", timeout=900,
                   resources={"metadata": {"path": str(nb.parent)}}).execute()
    outputs = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
    assert "SMOKE" in outputs and "all finite" in outputs
