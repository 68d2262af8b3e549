"""The results store: keys, fingerprints, atomic strict-JSON writes, digests, validation."""

import gzip
import json

import pytest

from revisit_bn import results


def test_key_ignores_parameter_order_and_sees_every_value():
    assert results.params_key({"a": 1, "b": 2}) == results.params_key({"b": 2, "a": 1})
    assert results.params_key({"a": 1, "b": 2}) != results.params_key({"a": 1, "b": 3})


def _run_payload(params):
    return {"format": results.FORMAT, "key": results.params_key(params), "experiment": "exp", "params": params,
            "status": "ok", "diverged_at": None, "metrics": {"x": [1.0, 0.5]}, "steps": {"train_loss": [2.0]},
            "tables": {}, "replay_steps": 1, "provenance": {}}


def test_atomic_write_then_load_round_trip(tmp_path):
    params = {"lr": 0.1}
    path = results.result_path("exp", params, tmp_path)
    results.write_json_atomic(path, _run_payload(params), digest=True)
    assert results.load(path, params)["metrics"] == {"x": [1.0, 0.5]}
    assert results.load(path, {"lr": 0.2}) is None  # different parameters: not this run
    assert path.name.endswith(".json.gz") and "\n " not in results.read_run_text(path)  # compact, compressed
    first = path.read_bytes()
    results.write_json_atomic(path, _run_payload(params), digest=True)
    assert path.read_bytes() == first  # no timestamp in the gzip header: the same run, the same bytes


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "exp" / "run.json"
    results.write_json_atomic(path, {"params": {}, "metrics": {"x": [1]}})
    with pytest.raises(TypeError):
        results.write_json_atomic(path, {"params": {}, "metrics": {"x": object()}})
    with pytest.raises(ValueError):  # strict JSON: NaN is refused, never written
        results.write_json_atomic(path, {"params": {}, "metrics": {"x": [float("nan")]}})
    assert json.loads(path.read_text())["metrics"] == {"x": [1]}
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]


def test_non_finite_numbers_become_null():
    assert results.finite_or_none({"a": [1.0, float("nan"), float("inf")], "b": (2.0,)}) == {"a": [1.0, None, None], "b": [2.0]}


def test_an_edited_number_fails_validation_naming_the_file(tmp_path):
    params = {"lr": 0.1}
    path = results.result_path("exp", params, tmp_path)
    results.write_json_atomic(path, _run_payload(params), digest=True)
    path.write_bytes(gzip.compress(results.read_run_text(path).replace("0.5", "0.6").encode()))
    with pytest.raises(results.StoreError, match=f"{path.name}.*changed after it was written"):
        results.validate(path)
    messages = []
    assert results.load(path, params, report=messages.append) is None  # read as missing: recomputed
    assert "recomputed" in messages[0] and str(path) in messages[0]


@pytest.mark.parametrize("text,reason", [('{"params": ', "not strict JSON"), ('{"a": NaN}', "not strict JSON"),
                                         ('{"params": {}}', "missing")])
@pytest.mark.parametrize("name", ["bad.json", "bad.json.gz"])
def test_a_file_that_is_not_a_run_is_named_by_path(tmp_path, text, reason, name):
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    with pytest.raises(results.StoreError, match=reason):
        results.validate(path)
    assert results.load(path, {}, report=lambda msg: None) is None


def test_a_damaged_compressed_file_is_named_by_path(tmp_path):
    path = tmp_path / "exp" / "0123456789abcdef.json.gz"
    path.parent.mkdir()
    path.write_bytes(b"{not gzip")
    with pytest.raises(results.StoreError, match=f"{path.name}.*not gzip"):
        results.validate(path)
    assert results.load(path, {}, report=lambda msg: None) is None


def test_temporary_files_of_a_killed_write_are_cleaned(tmp_path):
    (tmp_path / "exp").mkdir()
    left = tmp_path / "exp" / ".0123.abc.tmp"
    left.write_text("{")
    keep = tmp_path / "exp" / "0123.json"
    keep.write_text("{}")
    assert results.clean_temporary(tmp_path) == [left]
    assert not left.exists() and keep.exists()


def test_an_unwritable_root_fails_early_naming_the_variable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(results.StoreError, match="REVISIT_BN_RESULTS"):
        results.check_writable(blocker / "results")


@pytest.mark.parametrize("bad", ["", "a/b", ".."])
def test_bad_experiment_name_raises_value_error(bad, tmp_path):
    with pytest.raises(ValueError, match="experiment"):
        results.result_path(bad, {}, tmp_path)


def test_results_root_is_per_profile(monkeypatch, tmp_path):
    monkeypatch.setenv("REVISIT_BN_RESULTS", str(tmp_path))
    assert results.results_root("paper") == tmp_path / "paper"
    with pytest.raises(ValueError, match="profile"):
        results.results_root("fast")


SOURCE = '''"""Module docstring."""


def f(x):
    """Doc."""
    # a comment
    return x * 2
'''


def test_fingerprint_ignores_docstrings_comments_and_layout_but_sees_code():
    base = results.source_fingerprint(SOURCE)
    assert results.source_fingerprint(SOURCE.replace("Doc.", "Other words.").replace("# a comment", "# changed")) == base
    assert results.source_fingerprint(SOURCE.replace("return x * 2", "return (x *\n            2)")) == base
    assert results.source_fingerprint(SOURCE.replace("x * 2", "x * 3")) != base


def test_fingerprint_drops_the_empty_type_params_of_python_3_12(monkeypatch):
    # Python 3.12 parses every function and class with an empty `type_params`; a GPU machine's 3.12
    # must give the keys CI's 3.11 gives. Simulate 3.12's parser on this Python.
    import ast

    base = results.source_fingerprint(SOURCE)
    parse = ast.parse

    def parse_as_312(source, *args, **kwargs):
        tree = parse(source, *args, **kwargs)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                node.type_params = []
                node._fields = (*node._fields, "type_params")
        return tree

    monkeypatch.setattr(ast, "parse", parse_as_312)
    assert "type_params" in ast.dump(parse_as_312(SOURCE))  # the simulation adds the field
    assert results.source_fingerprint(SOURCE) == base
    assert results.source_fingerprint(SOURCE.replace("x * 2", "x * 3")) != base


def test_a_numeric_edit_changes_the_code_fingerprint_but_no_run_key(tmp_path, monkeypatch):
    # what renames nothing in the store: the key leaves out the code fields, which the file records
    from pathlib import Path

    here = Path(results.__file__).resolve().parent
    copy = tmp_path / "revisit_bn"
    copy.mkdir()
    for name in results._NUMERIC_MODULES:
        (copy / name).write_text((here / name).read_text())
    fake = copy / "results.py"
    fake.write_text("")
    monkeypatch.setattr(results, "__file__", str(fake))
    results.code_fingerprint.cache_clear()
    try:
        before = results.code_fingerprint()
        (copy / "layers.py").write_text((here / "layers.py").read_text() + "\n\ndef _added():\n    return 1\n")
        results.code_fingerprint.cache_clear()
        after = results.code_fingerprint()
    finally:
        results.code_fingerprint.cache_clear()
    assert before != after and len(after) == 12
    params = {"lr": 0.1, "data": "abc"}
    assert results.params_key({**params, "code": before}) == results.params_key({**params, "code": after})
    assert results.legacy_key({**params, "code": before}) != results.legacy_key({**params, "code": after})
    assert results.code_of({**params, "code": after, "bias_code": "b"}) == f"{after}+b"


def test_a_file_of_an_unknown_format_is_refused(tmp_path):
    params = {"lr": 0.1}
    path = results.result_path("exp", params, tmp_path)
    results.write_json_atomic(path, {**_run_payload(params), "format": 99}, digest=True)  # digest valid
    with pytest.raises(results.StoreError, match="format 99.*reads formats"):
        results.validate(path)
    assert results.load(path, params, report=lambda msg: None) is None


@pytest.mark.parametrize("change,words", [
    ({"metrics": {"x": [1.0, None]}}, "status 'ok' but holds a non-finite"),
    ({"steps": {"train_loss": [None]}}, "status 'ok' but holds a non-finite"),
    ({"status": "diverged", "diverged_at": 0}, "every loss and metric is finite"),
    ({"status": "diverged", "diverged_at": None, "steps": {"train_loss": [None]}}, "every loss and metric is finite"),
    ({"status": "finished"}, "status 'finished'"),
])
def test_a_status_that_contradicts_the_losses_is_refused(tmp_path, change, words):
    params = {"lr": 0.1}
    path = results.result_path("exp", params, tmp_path)
    results.write_json_atomic(path, {**_run_payload(params), **change}, digest=True)
    with pytest.raises(results.StoreError, match=words):
        results.validate(path)


def test_a_diverged_run_whose_losses_say_so_is_valid(tmp_path):
    params = {"lr": 0.1}
    path = results.result_path("exp", params, tmp_path)
    payload = {**_run_payload(params), "status": "diverged", "diverged_at": 1, "steps": {"train_loss": [2.0, None]}}
    results.write_json_atomic(path, payload, digest=True)
    assert results.validate(path)["diverged_at"] == 1


def test_a_file_under_its_format_2_name_is_named_for_migration(tmp_path):
    params = {"lr": 0.1, "code": "0123456789ab"}
    path = tmp_path / "exp" / f"{results.legacy_key(params)}{results.RUN_SUFFIX}"
    results.write_json_atomic(path, {**_run_payload(params), "format": 2}, digest=True)
    with pytest.raises(results.StoreError, match="format-2 key.*make migrate"):
        results.validate(path)


def test_the_validation_index_records_runs_per_code_and_drops_old_codes(tmp_path):
    index = results.ValidationIndex.read(tmp_path)
    assert not index.validated("exp/abc", "code1")
    index.add("exp/abc", "code1", "exact")
    index.add("exp/def", "code0", "tolerant")
    index.note_replay("code1", 1)
    assert index.prune({"code1"}) == ["code0"]
    index.write()
    again = results.ValidationIndex.read(tmp_path)
    assert again.validated("exp/abc", "code1") and not again.validated("exp/def", "code0")
    assert again.data["codes"]["code1"]["replays"][0]["runs"] == 1
    text = (tmp_path / results.VALIDATION_INDEX).read_text()
    assert text.count("\n") > 5 and '"exp/abc": "exact"' in text  # one run a line: small diffs in git
    (tmp_path / results.VALIDATION_INDEX).write_text("{")
    with pytest.raises(results.StoreError, match="not a valid validation index"):
        results.ValidationIndex.read(tmp_path)
    index.prune(set())
    index.write()  # nothing left: no file
    assert not (tmp_path / results.VALIDATION_INDEX).exists()


def test_a_long_run_keeps_its_first_steps_whole_and_then_every_kth_loss(tmp_path):
    from revisit_bn.store import RunResult

    total = results.MAX_STEP_LOSSES * 3 + 5  # stride 4: ceil(60,005 / 20,000)
    payload = {**_run_payload({"lr": 0.1}), "steps": {"train_loss": [float(i) for i in range(total)]}}
    compact = results.compact_steps(payload)
    assert compact["steps_every"] == 4 and compact["steps_total"] == total
    kept = results.kept_steps(total, 4)
    assert kept[:results.REPLAY_STEPS + 2] == list(range(results.REPLAY_STEPS)) + [8, 12]  # 8 steps whole, then multiples of 4
    assert compact["steps"]["train_loss"] == [float(i) for i in kept] and len(kept) <= results.MAX_STEP_LOSSES + 8
    assert results.compact_steps(compact) is compact and results.compact_steps(_run_payload({})) == _run_payload({})
    # stored, read back, and framed at the steps it kept
    path = results.result_path("exp", {"lr": 0.1}, tmp_path)
    results.write_json_atomic(path, compact, digest=True)
    frame = RunResult.from_payload(results.validate(path), cached=True).steps_frame()
    assert frame.step.tolist() == kept and (frame.step == frame.train_loss).all()
    # a stride below the replayed head does not repeat its steps
    assert results.kept_steps(25, 2, head=8) == list(range(8)) + list(range(8, 25, 2))
    assert results.kept_steps(5, 1) == [0, 1, 2, 3, 4]


def test_a_run_kind_may_keep_fewer_step_losses():
    from revisit_bn import store
    from revisit_bn.train import McsgdConfig

    total = 10_000
    payload = {**_run_payload({"lr": 0.1}), "steps": {"train_loss": [float(i) for i in range(total)]}}
    compact = results.compact_steps(payload, limit=2_000)
    assert compact["steps_every"] == 5 and len(compact["steps"]["train_loss"]) <= 2_000 + results.REPLAY_STEPS
    assert results.compact_steps(payload) is payload  # under the default limit: kept whole
    run = store.compute(McsgdConfig(method="sgd", steps=3_000, num_logs=4))  # MCSGD's chapter reads its log table
    assert run["steps_every"] == 2 and run["steps_total"] == 3_000 and McsgdConfig.max_step_losses == 2_000
