"""Results cache: one JSON file per run, keyed by the run's parameters, written atomically.

Layout: ``<results root>/<experiment>/<key>.json`` where ``key`` is a hash of the parameters
(including a fingerprint of the package code that produces the numbers). The root is
``$REVISIT_BN_RESULTS`` when set, else ``<project>/results`` (ignored by git).

Each file holds ``{"key", "params", "metrics", "provenance"}``; provenance records the versions,
device, git commit, time of creation and wall time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS_ENV = "REVISIT_BN_RESULTS"

# Modules whose code changes the numbers a run produces; their source is part of every key.
_NUMERIC_MODULES = ("data.py", "layers.py", "models.py", "train.py", "landscape.py")


def results_root() -> Path:
    """``$REVISIT_BN_RESULTS`` if set, else ``<project>/results``."""
    from .data import project_root

    env = os.environ.get(RESULTS_ENV)
    return Path(env).expanduser().resolve() if env else project_root() / "results"


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A short hash of the modules that determine a run's numbers (so edits invalidate the cache).

    Computed once per process: a run's key does not change if the files are edited meanwhile.
    """
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in _NUMERIC_MODULES:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:12]


def params_key(params: dict[str, Any]) -> str:
    """A 16-hex-digit key of JSON-serializable ``params`` (order-independent).

    Raises:
        TypeError: a parameter value is not JSON-serializable.
    """
    text = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def result_path(experiment: str, params: dict[str, Any], root: Path | None = None) -> Path:
    """Where the run with ``params`` of ``experiment`` is stored."""
    if not experiment or any(sep in experiment for sep in ("/", "\\", "..")):
        raise ValueError(f"experiment must be a plain folder name, got {experiment!r}")
    return (root or results_root()) / experiment / f"{params_key(params)}.json"


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the whole new one.

    The JSON is written to a temporary file in the same folder, flushed to disk, then renamed
    over ``path``; on any error the temporary file is removed and ``path`` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    """The stored run at ``path`` if it exists, parses, and was made with exactly ``params``."""
    try:
        payload = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return payload if payload.get("params") == params else None


def provenance(device: str, seconds: float) -> dict[str, Any]:
    """Versions, device, git commit and timestamps of a run."""
    import torch

    from . import __version__
    from .data import project_root

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True, timeout=10
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "revisit_bn": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
        "threads": torch.get_num_threads(),
        "git_commit": commit,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 2),
    }
