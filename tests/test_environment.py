"""The pins of pyproject.toml, environment.yml and uv.lock agree."""

import importlib.util
import os
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_pins():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(d.split("==") for d in deps)


def test_every_direct_dependency_is_pinned_exactly():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert deps and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][0-9A-Za-z.+]*", d) for d in deps), deps


def test_environment_yml_carries_the_same_pins_as_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    env_pins = dict(p.split("==") for p in pip if "==" in p)
    assert env_pins == _pyproject_pins()
    assert "python=3.11" in env["dependencies"]


def test_lock_file_resolves_every_pin_to_its_version():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"]}
    for name, version in _pyproject_pins().items():
        assert locked[name.lower().replace("_", "-")] == version, name


def test_make_test_keeps_a_notebooks_cells_on_one_worker_and_spreads_every_other_test():
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    root_conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(root_conftest)
    cells = [f"notebooks/31-mnist-batch-construction.ipynb::Cell {i}" for i in (0, 7, 12)]
    assert {root_conftest.scope_of(c) for c in cells} == {"notebooks/31-mnist-batch-construction.ipynb"}
    others = ["tests/test_store.py::test_a", "tests/test_store.py::test_b[x-y]",
              "tests/test_notebooks.py::test_ci_profile_runs_end_to_end[31-mnist-batch-construction]"]
    assert [root_conftest.scope_of(t) for t in others] == others  # one test, one unit
    # every process this suite starts (workers, kernels, torchrun) inherits the sleeping wait policy
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_the_tracked_tree_stays_under_48_mib_so_a_dataset_travels_beside_it():
    # a GPU machine takes a 64 MiB copy of the tree; CIFAR-10's training batches need the rest
    import subprocess

    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: no tracked tree to measure")
    files = [ROOT / name for name in listed.stdout.decode().split("\0") if name]
    size = sum(path.stat().st_size for path in files if path.is_file())
    assert len(files) > 1000 and size < 48 * 2**20, f"{size / 2**20:.1f} MiB tracked"
