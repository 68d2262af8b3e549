"""The pins of pyproject.toml, environment.yml and uv.lock agree."""

import re
import tomllib
from pathlib import Path

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
