"""Chapter 13's random-instance checks as a stored run (revisit_bn.bounds.BoundsConfig)."""

import pandas as pd
import pytest

from revisit_bn import bounds, results, store, theory

SMALL = bounds.BoundsConfig(batch_sizes=(2, 3, 16), per_size=120, chunk=50)


@pytest.mark.parametrize("changes,name", [(dict(batch_sizes=(2, 1)), "batch_sizes"), (dict(batch_sizes=()), "batch_sizes"),
                                          (dict(per_size=0), "per_size"), (dict(chunk=-5), "chunk"),
                                          (dict(seed=-1), "seed"), (dict(experiment="a/b"), "experiment")])
def test_a_bad_field_is_named_before_any_draw(changes, name):
    with pytest.raises(ValueError, match=name):
        SMALL.replace(**changes)


def test_the_stored_counts_are_those_of_every_instance_drawn_at_once():
    out = SMALL.compute()
    stored = pd.DataFrame(out["tables"]["counts"])
    assert stored.equals(bounds.counts(theory.check_bounds(batch_sizes=[2, 3, 16], per_size=120, chunk=50, progress=False)))
    # a step is a batch size: its violations over every statement and form
    assert out["steps"]["train_loss"] == [float(stored[stored.m == m].violations.sum()) for m in (2, 3, 16)]
    table = bounds.violation_table(stored)
    # Theorem 4.1 uses the convex half of the instances, Theorem 4.2 both halves
    assert (table.xs("Theorem 4.1").instances == 3 * 120).all() and (table.xs("Theorem 4.2").instances == 3 * 240).all()
    assert (table["at eps = 0"] + table["at eps > 0"] == table.violations).all()
    assert table["under named conditions"].xs("Theorem 4.1").isna().all()
    assert (table.xs("Theorem 4.2")["under named conditions"] < 3 * 240).all()


def test_a_bounds_run_replays_its_first_batch_sizes_and_a_changed_count_is_caught():
    payload = store.compute(SMALL)
    assert payload["replay_steps"] == 2 and len(payload["steps"]["train_loss"]) == 3
    assert store.replay(payload)[2]
    changed = {**payload, "steps": {"train_loss": [payload["steps"]["train_loss"][0] + 1] + payload["steps"]["train_loss"][1:]}}
    assert not store.replay(changed)[2]
    assert store.config_from_params(payload["params"]) == SMALL


def test_the_code_it_records_sees_its_own_module_and_its_key_does_not(monkeypatch):
    before, code = store.store_path(SMALL), results.code_of(SMALL.key_params())
    monkeypatch.setattr(bounds, "bounds_fingerprint", lambda: "0" * 12)
    assert results.code_of(SMALL.key_params()) != code  # its own code is in the code it records
    assert store.store_path(SMALL) == before  # and renames nothing
