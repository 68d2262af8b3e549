"""Results cache: keys, atomic writes, reads."""

import json

import pytest

from revisit_bn import results


def test_key_ignores_parameter_order_and_sees_every_value():
    assert results.params_key({"a": 1, "b": 2}) == results.params_key({"b": 2, "a": 1})
    assert results.params_key({"a": 1, "b": 2}) != results.params_key({"a": 1, "b": 3})


def test_atomic_write_then_load_round_trip(tmp_path):
    params = {"lr": 0.1}
    path = results.result_path("exp", params, tmp_path)
    results.write_json_atomic(path, {"params": params, "metrics": {"x": [1.0]}})
    assert results.load(path, params)["metrics"] == {"x": [1.0]}
    assert results.load(path, {"lr": 0.2}) is None  # different parameters: not this run


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "exp" / "run.json"
    results.write_json_atomic(path, {"params": {}, "metrics": {"x": [1]}})
    with pytest.raises(TypeError):
        results.write_json_atomic(path, {"params": {}, "metrics": {"x": object()}})
    assert json.loads(path.read_text())["metrics"] == {"x": [1]}
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]


def test_corrupt_file_reads_as_missing(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"params": ')
    assert results.load(path, {}) is None


@pytest.mark.parametrize("bad", ["", "a/b", ".."])
def test_bad_experiment_name_raises_value_error(bad, tmp_path):
    with pytest.raises(ValueError, match="experiment"):
        results.result_path(bad, {}, tmp_path)


def test_code_fingerprint_is_stable_within_a_checkout():
    assert results.code_fingerprint() == results.code_fingerprint()
    assert len(results.code_fingerprint()) == 12
