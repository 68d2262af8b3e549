"""The results store: one gzip-compressed strict-JSON file per run, named by what the run *is*, never rewritten.

Layout: ``<results root>/<profile>/<experiment>/<key>.json.gz`` (gzip without a timestamp, so
the same run gives the same bytes; ``zcat`` or :func:`read_run_text` shows the JSON), and beside
the experiments one small plain-JSON validation index, ``validated.json`` (:class:`ValidationIndex`).
The root is ``$REVISIT_BN_RESULTS`` when set, else ``<project>/results``. The ``book`` profile's
runs are committed to git (they are the book's data); ``ci`` runs are not (``results/ci`` is
ignored); ``paper`` runs are committed when they were computed (on a GPU, or on the CPU where
they are cheap).

A run's parameters (``params``) hold everything that changes its numbers:

- its configuration's fields (seed, step size, model, ...);
- ``threads``: the torch thread count it trained with (float32 reductions depend on it);
- ``data``: a checksum of the dataset tensors it read (:func:`revisit_bn.data.dataset_checksum`);
- the *code fields* (:data:`CODE_FIELDS`): ``code``, :func:`code_fingerprint`, a hash of the syntax
  trees of the modules that produce numbers (docstrings and comments do not count), and for some
  run kinds a fingerprint of their own module.

A run's **key** (its file name, :func:`params_key`) is a hash of its parameters *without* the code
fields: an edit to a numeric module renames and rewrites nothing. The code fields inside the file
say which code computed the run. Whether the current code still gives a stored run is shown by
replaying its first SGD steps (:func:`revisit_bn.store.replay`): ``make migrate`` does so for every
run that was computed under another code and records each one that matches in the validation
index, a few kB per profile. A run is *current* when the code that computed it is the current code,
or when the index records a replay under the current code (:func:`is_current`); any other stored
run is *stale*, and a notebook reads it as missing. A run file changes only when that run is
recomputed.

Each file holds ``{"format", "key", "experiment", "params", "status", "diverged_at", "metrics",
"steps", "tables", "replay_steps", "provenance", "digest"}``. ``status`` is ``"ok"`` or
``"diverged"`` (``diverged_at`` is then the first SGD step whose loss was not finite; non-finite
numbers are stored as ``null``). ``digest`` is a SHA-256 of the rest of the file, so that an
edited number is caught (:func:`validate`). Files are written atomically (:func:`write_json_atomic`).
``steps`` holds every SGD step's loss, except in a run of more steps than its run kind keeps
(:data:`MAX_STEP_LOSSES`, or the kind's ``max_step_losses``): there it holds the first
:data:`REPLAY_STEPS` and then every ``steps_every``-th, and the file also holds ``steps_every`` and
``steps_total`` (:func:`compact_steps`, :func:`kept_steps`).

Formats: 3 (this one); 2, files written before keys left out the code fields, whose ``key`` field
is the key they were first filed under (:func:`legacy_key`) and which ``make migrate`` renamed to
their key, their content unchanged. Any other format is refused.
"""

from __future__ import annotations

import ast
import functools
import gzip
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS_ENV = "REVISIT_BN_RESULTS"
PROFILES = ("ci", "book", "paper")
FORMAT = 3
# Formats this code reads (see the module docstring); a file of any other is refused by :func:`validate`.
KNOWN_FORMATS = (2, 3)
# Parameters that name the code a run was computed with: recorded in its file, left out of its key.
CODE_FIELDS = ("code", "bounds_code", "bias_code", "distributed_code")
# The validation index of a profile's folder (:class:`ValidationIndex`).
VALIDATION_INDEX = "validated.json"
# The first this many SGD steps of every run are replayed by `make verify` and the test suite.
REPLAY_STEPS = 8
# A run of more SGD steps than this keeps the losses of its first REPLAY_STEPS steps and then of every
# `steps_every`-th step (multiples of it), at most about this many (:func:`compact_steps`): the step losses
# of chapter 14's 200,000-step runs would otherwise take 1.7 MB a run, compressed.
MAX_STEP_LOSSES = 20_000

RUN_SUFFIX = ".json.gz"  # a run file's name: <key>.json.gz

# Modules whose code changes the numbers a run produces; their syntax trees are in every key.
_NUMERIC_MODULES = ("data.py", "layers.py", "norm_base.py", "santurkar_layers.py", "models.py", "train.py",
                    "landscape.py", "theory.py", "successors.py")


class StoreError(RuntimeError):
    """The results store cannot be used as asked (unwritable root, stale or damaged runs)."""


class MissingRunsError(StoreError):
    """Runs a notebook needs are not in the store; the message names them and ``make results``."""


def results_root(profile: str | None = None) -> Path:
    """``$REVISIT_BN_RESULTS`` if set, else ``<project>/results``; with ``profile``, its sub-folder.

    Raises:
        ValueError: ``profile`` is not one of :data:`PROFILES`.
    """
    from .data import project_root

    env = os.environ.get(RESULTS_ENV)
    root = Path(env).expanduser().resolve() if env else project_root() / "results"
    if profile is None:
        return root
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    return root / profile


def check_writable(root: Path) -> None:
    """Fail early, naming ``$REVISIT_BN_RESULTS``, when runs cannot be written under ``root``.

    Creates ``root`` if needed and writes (then removes) a probe file.

    Raises:
        StoreError: the folder cannot be created or written.
    """
    root = Path(root)  # a str root as well
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=root, prefix=".write-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise StoreError(
            f"the results root {root} cannot be written ({exc.strerror or exc}); set {RESULTS_ENV} to a "
            f"writable folder, or fix the folder's permissions"
        ) from exc


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _without_empty_type_params(tree: ast.AST) -> ast.AST:
    # Python 3.12 gave functions and classes a `type_params` field (PEP 695). Empty, it says nothing
    # about the code, but dumped it would give every module another fingerprint under 3.12 (the GPU
    # machine's Python) than under 3.11 (CI's): the same code must give the same keys everywhere.
    for node in ast.walk(tree):
        if getattr(node, "type_params", None) == []:
            del node.type_params
    return tree


def source_fingerprint(source: str) -> str:
    """SHA-256 of a module's syntax tree without docstrings: comments, docstrings and layout do not count.

    The tree is dumped as Python 3.11 dumps it, whatever Python runs this (3.12's empty
    ``type_params`` dropped, 3.13's ``show_empty`` asked for), so that a run computed under
    another Python (a GPU machine's) gets the key the same code gives here.
    """
    tree = _without_empty_type_params(_strip_docstrings(ast.parse(source)))
    options = {"show_empty": True} if sys.version_info >= (3, 13) else {}
    return hashlib.sha256(ast.dump(tree, annotate_fields=False, include_attributes=False, **options).encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A 12-hex-digit hash of the numeric modules' syntax trees (:data:`_NUMERIC_MODULES`).

    Computed once per process, so a run's key does not change if the files are edited meanwhile.
    """
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in _NUMERIC_MODULES:
        digest.update(name.encode())
        digest.update(source_fingerprint((here / name).read_text()).encode())
    return digest.hexdigest()[:12]


def identity(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` without the code fields (:data:`CODE_FIELDS`): what a run is, whatever code computed it."""
    return {k: v for k, v in params.items() if k not in CODE_FIELDS}


def code_of(params: dict[str, Any]) -> str:
    """The code that computed (or would compute) a run with ``params``: its code fields' values joined by
    ``+`` (e.g. ``"3fc57a6de15f"``, or ``"3fc57a6de15f+9c1e02b7aa41"`` for a run kind with a module of its own)."""
    return "+".join(str(params[k]) for k in CODE_FIELDS if k in params)


def _plain_json(value: Any) -> Any:
    """A NumPy scalar (``np.int64(1)``) as the Python number it is, for the key's JSON."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"run parameter values must be JSON numbers, strings, lists or objects, got {value!r}")


def _hash16(params: dict[str, Any]) -> str:
    try:
        text = json.dumps(params, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_plain_json)
    except ValueError as exc:  # NaN or an infinity: a key must name one run
        raise ValueError(f"run parameters must be finite numbers, got {params!r} ({exc})") from None
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def params_key(params: dict[str, Any]) -> str:
    """A run's 16-hex-digit key: a hash of ``params`` without the code fields (order-independent).

    Raises:
        TypeError: a parameter value is not JSON-serializable (NumPy scalars are taken as numbers).
        ValueError: a NaN or infinite parameter.
    """
    return _hash16(identity(params))


def legacy_key(params: dict[str, Any]) -> str:
    """The key a format-2 file was named by: a hash of all of ``params``, the code fields included."""
    return _hash16(params)


def result_path(experiment: str, params: dict[str, Any], root: Path | None = None) -> Path:
    """Where the run with ``params`` of ``experiment`` is stored under ``root`` (a profile's folder).

    Raises:
        ValueError: ``experiment`` is not a plain folder name.
    """
    if not isinstance(experiment, str) or not experiment or any(sep in experiment for sep in ("/", "\\", "..")):
        raise ValueError(f"experiment must be a plain folder name, got {experiment!r}")
    return (Path(root) if root is not None else results_root("book")) / experiment / f"{params_key(params)}{RUN_SUFFIX}"


def run_key(path: Path) -> str:
    """The key a run file is named by (its name without ``.json.gz``)."""
    name = Path(path).name
    return name[: -len(RUN_SUFFIX)] if name.endswith(RUN_SUFFIX) else Path(name).stem


def read_run_text(path: Path) -> str:
    """The JSON text of a run file (decompressed when its name ends in ``.gz``).

    Raises:
        FileNotFoundError: no file at ``path``.
        StoreError: a ``.gz`` file that is not gzip.
    """
    path = Path(path)
    if not path.name.endswith(".gz"):
        try:
            return path.read_text()
        except UnicodeDecodeError as exc:
            raise StoreError(f"{path} is not a valid run file (not text: {exc}; a compressed run is named .json.gz)") \
                from exc
    data = path.read_bytes()
    try:
        return gzip.decompress(data).decode()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path} is not a valid run file (not gzip-compressed JSON: {exc})") from exc


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float (in lists and dicts too; NumPy's floats and arrays as well)
    replaced by ``None`` (strict JSON)."""
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # a NumPy scalar or array: its Python form
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    if isinstance(value, tuple):
        return [finite_or_none(v) for v in value]
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    return value


def kept_steps(total: int, every: int, head: int = REPLAY_STEPS) -> list[int]:
    """The SGD steps (from 0) whose losses a run of ``total`` steps keeps with stride ``every``: the
    first ``head`` steps, then every multiple of ``every`` after them (all steps when ``every`` is 1)."""
    if every <= 1:
        return list(range(total))
    return list(range(min(head, total))) + list(range(-(-head // every) * every, total, every))


def compact_steps(payload: dict[str, Any], limit: int = MAX_STEP_LOSSES) -> dict[str, Any]:
    """``payload`` with its step losses thinned when it has more than ``limit`` steps.

    ``limit`` is :data:`MAX_STEP_LOSSES` unless a run kind names its own (``max_step_losses``, e.g.
    :class:`revisit_bn.train.McsgdConfig`, whose chapter reads its logged table instead).

    Keeps the steps :func:`kept_steps` names for the stride ``ceil(total / limit)`` and
    adds ``steps_every`` and ``steps_total``; the first :data:`REPLAY_STEPS` stay whole, so a
    thinned run replays as any other. ``diverged_at`` is computed before, from every step. A
    payload already thinned enough comes back unchanged; one thinned with a stride too fine for
    ``limit`` is thinned further, to a multiple of its stride (so that every step it keeps was kept).
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer (step losses a run keeps), got {limit!r}")
    steps = payload.get("steps") or {}
    every = payload.get("steps_every", 1)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise StoreError(f"a run's steps_every must be a positive integer, got {every!r}: the file is damaged")
    total = payload.get("steps_total") or max((len(v) for v in steps.values()), default=0)
    if total <= limit:
        return payload
    stride = math.ceil(total / limit)
    stride = -(-stride // every) * every  # a multiple of the stride already applied
    if stride <= every:
        return payload
    position = {step: i for i, step in enumerate(kept_steps(total, every))}
    keep = [position[step] for step in kept_steps(total, stride)]
    return {**payload, "steps": {name: [values[i] for i in keep] for name, values in steps.items()},
            "steps_every": stride, "steps_total": total}


def _canonical(payload: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in payload.items() if k != "digest"}, sort_keys=True,
                      separators=(",", ":"), allow_nan=False)


def content_digest(payload: dict[str, Any]) -> str:
    """SHA-256 of ``payload`` without its ``digest`` field, canonical JSON."""
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


def write_json_atomic(path: Path, payload: dict[str, Any], digest: bool = False) -> None:
    """Write ``payload`` as compact strict JSON so that readers see the old file or the whole new one.

    A ``path`` ending in ``.gz`` gets the JSON gzip-compressed (level 9, no timestamp: the same
    payload always gives the same bytes).

    The JSON is written to a temporary file in the same folder, flushed to disk, then renamed
    over ``path``; on any error the temporary file is removed and ``path`` is untouched.

    Args:
        digest: add a ``digest`` field (:func:`content_digest`) before writing.

    Raises:
        ValueError: a non-finite float in ``payload`` (use :func:`finite_or_none` first).
        TypeError: a value that JSON cannot hold.
    """
    if digest:
        payload = {**payload, "digest": content_digest(payload)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (text + "\n").encode()
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=9, mtime=0)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{run_key(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_REQUIRED = ("format", "key", "experiment", "params", "status", "metrics", "steps", "provenance", "digest")


def _finite(value: Any) -> bool:
    return value is not None and (not isinstance(value, float) or math.isfinite(value))


def _check_structure(path: Path, payload: dict[str, Any]) -> None:
    """The fields a run's readers and its replay use must have their types: ``params``, ``metrics``, ``steps``,
    ``tables`` and ``provenance`` objects, ``metrics`` and ``steps`` of lists of numbers (or ``null``), the metric
    lists of one length (an entry per finished epoch), ``replay_steps`` a count no larger than the stored steps."""
    def numbers(values) -> bool:
        return isinstance(values, list) and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                                                for v in values)

    problems = [f"{name} is not an object" for name in ("params", "metrics", "steps", "provenance")
                if not isinstance(payload.get(name), dict)]
    if not isinstance(payload.get("tables", {}), dict):
        problems.append("tables is not an object")
    if not problems:
        problems += [f"metric {k!r} is not a list of numbers" for k, v in payload["metrics"].items() if not numbers(v)]
        problems += [f"steps {k!r} is not a list of numbers" for k, v in payload["steps"].items() if not numbers(v)]
        lengths = {k: len(v) for k, v in payload["metrics"].items() if isinstance(v, list)}
        if len(set(lengths.values())) > 1:  # one entry per finished epoch in every metric
            problems.append("metric lists of unequal lengths (" + ", ".join(f"{k} {n}" for k, n in lengths.items())
                            + "), where each holds one entry per finished epoch")
        for name, table in payload.get("tables", {}).items():  # each a frame: named columns of one length
            if not isinstance(table, dict) or not all(isinstance(v, list) for v in table.values()):
                problems.append(f"table {name!r} is not an object of columns (lists)")
            elif len({len(v) for v in table.values()}) > 1:
                problems.append(f"table {name!r} has columns of unequal lengths")
        every, total = payload.get("steps_every", 1), payload.get("steps_total")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            problems.append(f"steps_every is {every!r}, not a positive integer")
        elif every > 1 and "train_loss" in payload["steps"]:  # a thinned run: the steps kept_steps names
            if isinstance(total, bool) or not isinstance(total, int) or total < 1:
                problems.append(f"steps_total is {total!r}, not a count, in a run thinned to steps_every={every}")
            elif len(kept_steps(total, every)) != len(payload["steps"]["train_loss"]):
                problems.append(f"{len(payload['steps']['train_loss'])} stored steps, where steps_every={every} of "
                                f"steps_total={total} keeps {len(kept_steps(total, every))}")
        if "train_loss" not in payload["steps"]:
            problems.append("steps has no train_loss")
    replay = payload.get("replay_steps")
    if not isinstance(replay, int) or isinstance(replay, bool) or replay < 0:
        problems.append(f"replay_steps is {replay!r}, not a count")
    elif not problems and replay > len(payload["steps"]["train_loss"]):
        problems.append(f"replay_steps {replay} exceeds the {len(payload['steps']['train_loss'])} stored steps")
    if problems:
        raise StoreError(f"{path} is not a valid run file ({'; '.join(problems)}): a damaged or hand-edited run; "
                         "recompute it with `make results`")


def _check_status(path: Path, payload: dict[str, Any]) -> None:
    """A run's ``status`` must say what its losses say: ``"ok"`` with every step loss and metric finite,
    ``"diverged"`` with ``diverged_at`` a step, and something non-finite at or after it."""
    status, at = payload["status"], payload.get("diverged_at")
    losses = (payload.get("steps") or {}).get("train_loss", [])
    metrics = [v for values in (payload.get("metrics") or {}).values() for v in values]
    nonfinite = any(not _finite(v) for v in losses) or any(not _finite(v) for v in metrics)
    if status == "ok" and (nonfinite or at is not None):
        raise StoreError(f"{path} says status 'ok' but holds a non-finite loss or metric (or a divergence step "
                         f"{at}): a damaged or hand-edited run; recompute it with `make results`")
    if status == "diverged" and (not isinstance(at, int) or isinstance(at, bool) or at < 0 or not nonfinite):
        raise StoreError(f"{path} says status 'diverged' (at step {at!r}) but every loss and metric is finite: "
                         "a damaged or hand-edited run; recompute it with `make results`")
    if status not in ("ok", "diverged"):
        raise StoreError(f"{path} has status {status!r}; a run's status is 'ok' or 'diverged'")
    epochs = (payload.get("params") or {}).get("epochs")
    lengths = {len(v) for v in (payload.get("metrics") or {}).values()}
    if status == "ok" and isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0 and not lengths:
        raise StoreError(f"{path} is a finished run of {epochs} epochs with no metrics (a run trained by epochs "
                         "records one entry per epoch): a damaged or hand-edited run; recompute it with `make results`")
    if isinstance(epochs, int) and lengths and (lengths != {epochs} if status == "ok" else max(lengths) > epochs):
        raise StoreError(f"{path} holds metrics for {sorted(lengths)} epochs of its {epochs} ("
                         + ("a finished run has one entry per epoch" if status == "ok" else "a diverged run at most")
                         + "): a damaged or hand-edited run; recompute it with `make results`")
    total = payload.get("steps_total") if isinstance(payload.get("steps_total"), int) else len(losses)
    if status == "diverged" and at >= total:
        raise StoreError(f"{path} says it diverged at step {at}, past its {total} steps: a damaged or hand-edited "
                         "run; recompute it with `make results`")


def validate(path: Path) -> dict[str, Any]:
    """Read the run file at ``path`` and check it is a whole, unedited run of a known format.

    Returns:
        The payload.

    Raises:
        StoreError: the file is not strict JSON, misses a field, has a format this code does not
            read (:data:`KNOWN_FORMATS`), a status its losses contradict (or metrics for other than its
            epochs, no metrics for a finished run of epochs, a divergence step past its steps), an experiment other
            than its folder's, a name that is not its parameters' key (a format-2 name: ``make migrate`` renames
            it), a key field that is neither (nor the format-2 key a renamed file keeps), or a digest that does
            not match its content (a number was edited); the message names the file.
        FileNotFoundError: no file at ``path``.
    """
    text = read_run_text(path)
    try:
        payload = json.loads(text, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    except ValueError as exc:
        raise StoreError(f"{path} is not a valid run file (not strict JSON: {exc})") from exc
    if not isinstance(payload, dict) or any(f not in payload for f in _REQUIRED):
        missing = [f for f in _REQUIRED if not isinstance(payload, dict) or f not in payload]
        raise StoreError(f"{path} is not a valid run file (missing {', '.join(missing)})")
    if payload["format"] not in KNOWN_FORMATS:
        raise StoreError(f"{path} has format {payload['format']!r}; this code reads formats {KNOWN_FORMATS} "
                         "(a file from a newer revisit_bn: update the checkout, or recompute the run)")
    if payload["digest"] != content_digest(payload):
        raise StoreError(f"{path} was changed after it was written: its digest does not match its content")
    _check_structure(path, payload)
    named = {payload["experiment"], Path(path).parent.name} | (
        {payload["params"]["experiment"]} if "experiment" in payload["params"] else set())
    if len(named) > 1:
        raise StoreError(f"{path} names experiments {sorted(map(str, named))} (its experiment field, its folder and "
                         "its parameters must agree): a run filed in another experiment's folder, or hand-edited")
    key = params_key(payload["params"])
    if key != run_key(path):
        if legacy_key(payload["params"]) == run_key(path):
            raise StoreError(f"{path} is named by its format-2 key (the code fingerprint included); `make migrate` "
                             f"renames it to {key}{RUN_SUFFIX}, its content unchanged")
        raise StoreError(f"{path} is filed under the wrong key: its parameters give {key}")
    if payload["key"] not in (key, legacy_key(payload["params"])):  # a renamed format-2 file keeps its old key field
        raise StoreError(f"{path} says its key is {payload['key']!r}, neither its name's nor its parameters' "
                         f"({key}): a damaged or hand-edited run; recompute it with `make results`")
    _check_status(path, payload)
    return payload


def load(path: Path, params: dict[str, Any], report=None) -> dict[str, Any] | None:
    """The stored run at ``path`` if it exists, is valid (:func:`validate`) and is the run ``params``
    describe (the same parameters, whatever code computed it: see :func:`is_current`).

    An invalid file is reported (``report(message)``, default a warning) and read as missing, so
    that the caller recomputes it.
    """
    import warnings

    try:
        payload = validate(path)
    except (FileNotFoundError, NotADirectoryError):  # no such file (or a file stands where a folder would be)
        return None
    except IsADirectoryError:
        (report or (lambda msg: warnings.warn(msg, stacklevel=3)))(f"{path} is a folder, not a run file; move it away")
        return None
    except StoreError as exc:
        (report or (lambda msg: warnings.warn(msg, stacklevel=3)))(f"{exc}; it will be recomputed")
        return None
    return payload if identity(payload.get("params", {})) == identity(params) else None


class ValidationIndex:
    """Which stored runs of a profile the current code has been shown to give, by replay: ``validated.json``.

    A stored run computed under other code than the current one (an edit to a numeric module since)
    is current once ``make migrate`` has replayed its first SGD steps with the current code and
    they matched (:func:`revisit_bn.store.replay`). The index records that, per code
    (:func:`code_of`), instead of the run file being renamed or rewritten::

        {"format": 1,
         "codes": {"<code>": {"replays": [{"at": "...", "on": "<cpu_arithmetic()>", "runs": 830}],
                              "runs": {"<experiment>/<key>": "exact" | "tolerant", ...}}}}

    ``runs`` maps each validated run to the replay rule it passed under. Only codes that some run
    of the profile needs now are kept (:meth:`prune`); the index is plain, indented JSON with one run
    a line, so that a migration adds a few kB to the repository's history.
    """

    FORMAT = 1

    def __init__(self, root: Path, data: dict[str, Any] | None = None) -> None:
        self.path = Path(root) / VALIDATION_INDEX
        self.data = data if data is not None else {"format": self.FORMAT, "codes": {}}

    @classmethod
    def read(cls, root: Path) -> "ValidationIndex":
        """The index of the profile folder ``root`` (empty if there is none).

        Raises:
            StoreError: the file is not the index's JSON or has another format.
        """
        path = Path(root) / VALIDATION_INDEX
        try:
            stat = path.stat()
        except FileNotFoundError:
            return cls(root)
        cached = _INDEX_CACHE.get(path)
        if cached is not None and cached[0] == (stat.st_mtime_ns, stat.st_size):
            return cls(root, cached[1])
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise StoreError(f"{path} is not a valid validation index (not JSON: {exc}); restore it from git, "
                             "or delete it and run `make migrate`") from exc
        if (not isinstance(data, dict) or data.get("format") != cls.FORMAT or not isinstance(data.get("codes"), dict)
                or not all(isinstance(entry, dict) and isinstance(entry.get("runs", {}), dict)
                           for entry in data["codes"].values())):
            raise StoreError(f"{path} is not a validation index of format {cls.FORMAT}; restore it from git, "
                             "or delete it and run `make migrate`")
        _INDEX_CACHE[path] = ((stat.st_mtime_ns, stat.st_size), data)
        return cls(root, data)

    def validated(self, run: str, code: str) -> bool:
        """Whether the run ``"<experiment>/<key>"`` was replayed and matched under ``code``."""
        return run in self.data["codes"].get(code, {}).get("runs", {})

    def add(self, run: str, code: str, rule: str) -> None:
        """Record that ``run`` replays under ``code`` with ``rule`` (``"exact"`` or ``"tolerant"``)."""
        self.data["codes"].setdefault(code, {"replays": [], "runs": {}})["runs"][run] = rule

    def note_replay(self, code: str, runs: int) -> None:
        """Record one ``make migrate`` pass under ``code``: when, on which arithmetic, how many runs matched."""
        from datetime import datetime, timezone

        block = self.data["codes"].setdefault(code, {"replays": [], "runs": {}})
        block["replays"].append({"at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                 "on": cpu_arithmetic(), "runs": runs})

    def prune(self, codes: set[str]) -> list[str]:
        """Drop the blocks of codes not in ``codes`` (codes no run needs now); return the dropped ones."""
        dropped = sorted(set(self.data["codes"]) - set(codes))
        for code in dropped:
            del self.data["codes"][code]
        return dropped

    def write(self) -> None:
        """Write the index atomically (plain JSON, one run a line); no file while it is empty."""
        if not self.data["codes"]:
            self.path.unlink(missing_ok=True)
            return
        text = json.dumps(self.data, sort_keys=True, indent=1, allow_nan=False) + "\n"
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".validated.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# the last index read from each path, with its file's (mtime, size): lookups read it once, not once a run
_INDEX_CACHE: dict[Path, tuple[tuple[int, int], dict[str, Any]]] = {}


def run_name(path: Path) -> str:
    """``"<experiment>/<key>"``: how the validation index names the run stored at ``path``."""
    return f"{Path(path).parent.name}/{run_key(path)}"


def is_current(path: Path, payload: dict[str, Any], params: dict[str, Any], root: Path | None = None) -> bool:
    """Whether the stored run ``payload`` at ``path`` stands for the run ``params`` under the current code:
    computed by the code ``params`` names (:func:`code_of`), or replayed under it (:class:`ValidationIndex`
    of ``root``, default the folder above the experiment's)."""
    code = code_of(params)
    if code_of(payload["params"]) == code:
        return True
    return ValidationIndex.read(root or Path(path).parent.parent).validated(run_name(path), code)


def clean_temporary(root: Path) -> list[Path]:
    """Remove the temporary files that a killed atomic write left under ``root``; return them."""
    root = Path(root)  # a str root as well
    left = [p for p in root.rglob(".*.tmp") if p.is_file()] if root.is_dir() else []
    for p in left:
        p.unlink(missing_ok=True)
    return left


def stored_runs(root: Path) -> list[Path]:
    """Every run file under a profile's folder (the ``claims`` folder and the validation index excluded),
    sorted; files of the earlier uncompressed format (``<key>.json``) too, so that they show as stale."""
    root = Path(root)  # a str root as well
    if not root.is_dir():
        return []
    return sorted(p for pattern in (f"*/*{RUN_SUFFIX}", "*/*.json") for p in root.glob(pattern)
                  if p.parent.name != "claims")


def git_commit() -> str | None:
    """The project's current git commit; outside a checkout ``$REVISIT_BN_GIT_COMMIT`` (a copy of the tree
    sent to a GPU machine carries no ``.git``), else ``None``."""
    from .data import project_root

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return commit or os.environ.get("REVISIT_BN_GIT_COMMIT") or None


def gpu_provenance(device: str) -> dict[str, Any]:
    """On CUDA: the GPU's name and whether float32 matrix products and convolutions could use TF32
    (torch's flags and ``$NVIDIA_TF32_OVERRIDE``, which turns TF32 off in cuBLAS and cuDNN when 0)."""
    import torch

    if not device.startswith("cuda"):
        return {}
    return {"gpu": torch.cuda.get_device_name(torch.device(device)),
            "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32,
                     "NVIDIA_TF32_OVERRIDE": os.environ.get("NVIDIA_TF32_OVERRIDE")}}


@functools.lru_cache(maxsize=None)
def cpu_arithmetic() -> str:
    """This machine's CPU as far as float arithmetic goes: model name, the SIMD level torch's kernels
    use, and a short hash of the CPU's feature flags (Linux's ``/proc/cpuinfo``).

    Two CPUs of another kind (another vendor, another vector width) sum in another order in
    MKL's and torch's kernels: the same code and data give losses that differ in the last bits.
    :func:`revisit_bn.store.replay` asks for an exact replay only where this string is the one
    a run recorded. Example: ``"Intel(R) Xeon(R) Processor (AVX512, flags 3f2a9c1e)"``.
    """
    import torch

    model, flags = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = " ".join(sorted(value.split()))
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    flag_hash = hashlib.sha256(flags.encode()).hexdigest()[:8]
    return f"{model} ({torch.backends.cpu.get_cpu_capability()}, flags {flag_hash})"


def provenance(device: str, seconds: float, threads: int) -> dict[str, Any]:
    """Versions, device, the thread count it trained with, git commit and timestamps of a run (not part of its key)."""
    import torch

    from . import __version__

    return {
        "revisit_bn": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "device": device,
        "cpu": cpu_arithmetic(),
        "threads": threads,
        "git_commit": git_commit(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 2),
        **gpu_provenance(device),
    }
