"""The committed results store: every run the book reads is there, valid, current, and reproducible.

A sample of stored runs is replayed: their first SGD steps are retrained at the recorded thread
count and must give the stored losses, exactly where the run was made on this machine's kind of
CPU, within the tolerant rule where it was made on other arithmetic (see :func:`revisit_bn.store.replay`).
"""

import gzip
import math
from pathlib import Path

import numpy as np
import pytest

from revisit_bn import chapters, commands, experiments, results
from revisit_bn.train import TrainConfig
from revisit_bn.store import config_from_params, lookup, replay, replay_rule, store_path, tolerant_replay_match

BOOK = results.results_root("book")
SAMPLE = commands.sample_runs("book", size=24, seed=0)


@pytest.fixture(scope="module")
def book_states():
    """Every stored file of the book profile by state (one pass over the store: each file read and checked)."""
    return commands.run_states("book")


def test_every_run_of_the_book_profile_is_in_the_store(book_states):
    current = set(book_states["current"])
    missing = [c.label() for _, c in experiments.profile_configs("book") if store_path(c, BOOK) not in current]
    assert not missing, (f"{len(missing)} runs of the book profile are not in {BOOK} (or are damaged): "
                         f"{missing[:10]}; run `make results`")


def test_no_stored_run_is_stale_or_damaged(book_states):
    stale = sorted(book_states["stale"] + book_states["orphaned"] + book_states["damaged"])
    assert not stale, (f"{len(stale)} stored runs are stale, orphaned or damaged (not current under this code, or needed by "
                       f"no chapter): {[str(p) for p in stale[:10]]}; run `make migrate`, `make results`, or delete them")
    for path in results.stored_runs(BOOK):
        results.validate(path)  # raises StoreError naming a changed or damaged file


def test_the_store_is_small_and_strict():
    paths = results.stored_runs(BOOK)
    size = sum(p.stat().st_size for p in paths)
    assert size < 50e6, f"the book profile's runs take {size / 1e6:.1f} MB (budget 50 MB)"
    for path in paths:
        text = results.read_run_text(path)
        assert "NaN" not in text and "Infinity" not in text, path


def test_the_replay_sample_covers_every_experiment():
    assert len(SAMPLE) >= 20
    experiments_stored = {p.parent.name for p in results.stored_runs(BOOK)}
    assert {p.parent.name for p in SAMPLE} == experiments_stored


@pytest.mark.parametrize("path", SAMPLE, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_stored_run_replays(path):
    payload = results.validate(path)
    stored, replayed, match = replay(payload)
    rule = replay_rule(payload["provenance"])
    assert match, (f"{path}: the first {len(stored)} SGD steps give {replayed}, the store holds {stored} "
                   f"(rule: {rule}; made on {payload['provenance'].get('cpu')}, replayed on {results.cpu_arithmetic()})")


def test_the_replay_rule_is_exact_only_on_the_arithmetic_a_run_was_made_on():
    here = results.cpu_arithmetic()
    assert replay_rule({"device": "cpu", "cpu": here}) == "exact"
    assert replay_rule({"device": "cpu"}) == "tolerant"  # made before the CPU was recorded
    assert replay_rule({"device": "cpu", "cpu": "AMD EPYC 7B13 (AVX2, flags 00000000)"}) == "tolerant"
    assert replay_rule({"device": "cuda:0", "gpu": "NVIDIA H100 80GB HBM3", "cpu": here}) == "tolerant"


def test_a_run_made_here_replays_bit_for_bit_and_a_one_ulp_change_is_caught():
    # A fresh run of this machine: the exact rule holds, and is the one that sees a last-bit change.
    params = results.validate(next(p for p in SAMPLE if p.parent.name == "large_variance"))["params"]
    config = config_from_params(params)
    losses = config.compute(progress=False, max_steps=8)["steps"]["train_loss"][:8]
    payload = {"params": params, "replay_steps": 8, "steps": {"train_loss": losses},
               "provenance": {"device": "cpu", "cpu": results.cpu_arithmetic()}}
    assert replay(payload)[2]
    nudged = np.array(losses, dtype=np.float32)
    nudged[-1] = np.nextafter(nudged[-1], np.float32(np.inf))
    changed = {**payload, "steps": {"train_loss": [float(v) for v in nudged]}}
    assert not replay(changed)[2]
    assert tolerant_replay_match(nudged, np.array(losses, dtype=np.float32))  # another CPU's rule lets it pass


def test_changed_numerics_make_every_run_stale_and_the_notebooks_stop(monkeypatch):
    # What an edit to layers.py does: a new code fingerprint; every stored run waits for a replay under it.
    monkeypatch.setattr(results, "code_fingerprint", lambda: "0123456789ab")
    states = commands.run_states("book")
    assert len(states["stale"]) == len(results.stored_runs(BOOK)) and not states["current"]
    namespace = {"profile": "book", "recompute": False}
    with pytest.raises(results.MissingRunsError, match=r"(?s)computed under other code.*make migrate.*make results"):
        experiments.setup("33-large-variance", namespace)


def test_make_verify_reports_a_changed_number(tmp_path, monkeypatch):
    source = SAMPLE[0]
    copy = tmp_path / "book" / source.parent.name / source.name
    copy.parent.mkdir(parents=True)
    copy.write_bytes(gzip.compress(results.read_run_text(source).replace('"train_loss":[', '"train_loss":[9.5,', 1).encode()))
    monkeypatch.setenv("REVISIT_BN_RESULTS", str(tmp_path))
    failures = commands.verify("book", out=open(Path(tmp_path) / "log.txt", "w"))
    assert len(failures) == 1 and source.name in failures[0] and "digest" in failures[0]


def _store_copy(tmp_path, monkeypatch, paths):
    for source in paths:
        copy = tmp_path / "book" / source.parent.name / source.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(source.read_bytes())
    monkeypatch.setenv("REVISIT_BN_RESULTS", str(tmp_path))
    return [tmp_path / "book" / p.parent.name / p.name for p in paths]


def test_migrate_records_runs_that_replay_under_new_code_and_rewrites_no_run_file(tmp_path, monkeypatch):
    # One real run of each of two experiments, copied; then a "new" code fingerprint.
    sources = [p for p in SAMPLE if p.parent.name == "large_variance"][:1]
    sources += [p for p in SAMPLE if p.parent.name == "batch_size_one"][:1]
    assert len(sources) == 2
    copies = _store_copy(tmp_path, monkeypatch, sources)
    # the second run's stored losses are changed (and re-digested): this code cannot give them
    tampered = results.validate(copies[1])
    tampered["steps"]["train_loss"][0] += 0.5
    tampered.pop("digest")
    results.write_json_atomic(copies[1], tampered, digest=True)
    before = {p: p.read_bytes() for p in copies}
    monkeypatch.setattr(results, "code_fingerprint", lambda: "0123456789ab")
    config = config_from_params(results.validate(copies[0])["params"])
    assert lookup(config, tmp_path / "book") is None  # stale: read as missing
    migrated, left = commands.migrate("book", out=open(tmp_path / "log.txt", "w"))
    assert migrated == 1 and len(left) == 1 and copies[1].name[:16] in left[0] and "other losses" in left[0]
    assert {p: p.read_bytes() for p in copies} == before  # no run file renamed or rewritten
    index = results.ValidationIndex.read(tmp_path / "book")
    assert index.validated(results.run_name(copies[0]), "0123456789ab")
    assert not index.validated(results.run_name(copies[1]), "0123456789ab")
    stored = lookup(config, tmp_path / "book")  # current again, from the index
    assert stored is not None and stored.params["code"] == results.validate(sources[0])["params"]["code"]
    states = commands.run_states("book")
    assert states["current"] == [copies[0]] and states["stale"] == [copies[1]]
    # a second pass finds only the one that does not replay, and a newer code drops the older entries
    assert commands.migrate("book", out=open(tmp_path / "log.txt", "w"))[0] == 0
    monkeypatch.setattr(results, "code_fingerprint", lambda: "ba9876543210")
    assert commands.migrate("book", out=open(tmp_path / "log.txt", "w"))[0] == 1
    assert set(results.ValidationIndex.read(tmp_path / "book").data["codes"]) == {"ba9876543210"}


def test_migrate_renames_a_format_2_file_to_its_key_with_its_bytes(tmp_path, monkeypatch):
    source = [p for p in SAMPLE if p.parent.name == "large_variance"][0]
    payload = results.validate(source)
    legacy = tmp_path / "book" / source.parent.name / f"{results.legacy_key(payload['params'])}{results.RUN_SUFFIX}"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(source.read_bytes())
    monkeypatch.setenv("REVISIT_BN_RESULTS", str(tmp_path))
    assert commands.run_states("book")["stale"] == [legacy]
    commands.migrate("book", out=open(tmp_path / "log.txt", "w"))
    renamed = tmp_path / "book" / source.parent.name / source.name
    assert not legacy.exists() and renamed.read_bytes() == source.read_bytes()
    assert commands.run_states("book")["current"] == [renamed]


def test_two_processes_filling_one_store_compute_every_run_once(results_root):
    # what a Slurm job array does against a shared store: here two processes on one machine, started together,
    # each asked for every run (shard 0/1), so that only the lock files keep them from computing a run twice
    import os
    import subprocess
    import sys

    name = "33-large-variance"
    env = {**os.environ, "REVISIT_BN_RESULTS": str(results_root), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "revisit_bn.commands", "results", "--profile", "ci", "--chapter", name, "--shard"]
    procs = [subprocess.Popen(argv + [shard], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for shard in ("0/1", "0/1")]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    computed = [line.split(" | ")[1] for log in logs for line in log.splitlines() if line.startswith("[")]
    configs = experiments.CHAPTERS[name].configs("ci")
    assert sorted(computed) == sorted(c.label() for c in configs), logs  # every run, none twice
    assert all(" | " in log and "done:" in log for log in logs) and min(len(log.splitlines()) for log in logs) > 3
    stored = results.stored_runs(results_root / "ci")
    assert len(stored) == len(configs) and all(results.validate(p) for p in stored)  # every file whole
    assert not list(results_root.rglob("*.lock")) and not list(results_root.rglob("*.tmp"))


def test_a_lock_left_by_a_killed_process_is_taken_over(results_root):
    config = experiments.CHAPTERS["33-large-variance"].configs("ci")[0]
    path = store_path(config, results_root / "ci")
    lock = commands._lock_path(path)
    lock.parent.mkdir(parents=True)
    lock.write_text('{"host": "%s", "pid": 999999999, "since": 0}' % __import__("socket").gethostname())
    assert commands._claim(path)  # its process is gone
    assert not commands._claim(path)  # now held by this one
    lock.unlink()


def test_a_next_book_scale_is_computed_into_the_book_store_and_kept_there_until_it_takes_over(tmp_path, monkeypatch):
    # Chapter 33 with a `next` scale (1 epoch, one step size, one seed, the book's data and one other spread: 6 runs),
    # computed into an empty store.
    import dataclasses

    name = "33-large-variance"
    spec = experiments.CHAPTERS[name]
    staged = {**spec.profiles["book"], "seeds": [0], "epochs": 1, "lrs": [0.1], "variance_datasets": ["large_variance_wide"],
              "variance_lrs": [0.1]}
    monkeypatch.setitem(experiments.CHAPTERS, name, dataclasses.replace(spec, profiles={**spec.profiles, "next": staged}))
    monkeypatch.setenv("REVISIT_BN_RESULTS", str(tmp_path))
    assert [n for n, _ in experiments.profile_configs("next", [name])] == [name] * 6
    assert commands.compute_missing("next", [name], out=open(tmp_path / "log.txt", "w")) == 6
    stored = results.stored_runs(tmp_path / "book")  # the book store, not a store of its own
    assert len(stored) == 6 and not (tmp_path / "next").exists()
    assert commands.stale_runs("book") == []  # waiting runs are not stale
    assert commands.compute_missing("next", [name], out=open(tmp_path / "log.txt", "w")) == 0  # resumable
    with pytest.raises(ValueError, match="still being computed"):  # no notebook renders a scale being computed
        experiments.setup(name, {"profile": "next", "recompute": False})
    # the book profile takes the next values: the same runs, under the same keys, are the book's now
    promoted = {**spec.profiles, "book": staged}
    monkeypatch.setitem(experiments.CHAPTERS, name, dataclasses.replace(spec, profiles=promoted))
    assert all(lookup(c, tmp_path / "book") is not None for c in experiments.CHAPTERS[name].configs("book"))
    # and without a next scale the runs are stale again
    monkeypatch.setitem(experiments.CHAPTERS, name, spec)
    assert sorted(commands.stale_runs("book")) == sorted(stored)


# ------------------------------------------------------------------------------------------------
# The paper profile: runs made on a lent GPU, committed with their provenance, replayed here
# ------------------------------------------------------------------------------------------------

PAPER = results.results_root("paper")
PAPER_SAMPLE = commands.sample_runs("paper", size=9, seed=0)  # one run of each of the 9 experiments stored there


def test_stored_paper_runs_are_current_whole_and_say_where_they_were_made():
    paths = results.stored_runs(PAPER)
    assert len(paths) >= 430, (f"the paper profile holds {len(paths)} runs; chapters 14 and 31-34's 330, chapters 23 "
                               "and 25's 90 deep linear network runs and chapter 15's 10 are committed")
    stale = commands.stale_runs("paper")
    assert not stale, f"{len(stale)} stored paper runs are stale: {[str(p) for p in stale[:5]]}"
    for path in paths:
        payload = results.validate(path)
        prov = payload["provenance"]
        if str(prov["device"]).startswith("cuda"):
            assert prov["gpu"] and prov["tf32"]["NVIDIA_TF32_OVERRIDE"] == "0", path  # float32, not TF32


def test_the_paper_replay_sample_covers_every_experiment_stored_there():
    assert {p.parent.name for p in PAPER_SAMPLE} == {p.parent.name for p in results.stored_runs(PAPER)}


@pytest.mark.parametrize("path", PAPER_SAMPLE, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_stored_paper_run_replays(path):
    stored, replayed, match = replay(results.validate(path))
    assert match, f"{path}: the first {len(stored)} SGD steps give {replayed}, the store holds {stored}"


def test_the_tolerant_rule_rejects_a_changed_first_loss_and_a_changed_later_loss():
    # a run made on the H100 whose first three losses are not 0 (with one label per batch in sequence, BN's
    # training loss is exactly 0 after one step, and a relative change of 0 is no change)
    payload = next(p for p in map(results.validate, results.stored_runs(PAPER))
                   if str(p["provenance"]["device"]).startswith("cuda") and min(map(abs, p["steps"]["train_loss"][:3])) > 0.1)
    assert replay(payload)[2]
    for step, factor in ((0, 1 + 1e-4), (1, 1 + 1e-3), (2, 1.02)):
        changed = {**payload, "steps": {"train_loss": list(payload["steps"]["train_loss"])}}
        changed["steps"]["train_loss"][step] *= factor
        assert not replay(changed)[2], f"a loss changed by {factor - 1:.0e} at step {step} still replays"


def test_a_chapter_shows_its_paper_profile_only_when_every_run_is_stored(tmp_path, monkeypatch, capsys):
    paper = experiments.stored_profile("31-mnist-batch-construction", "paper")
    assert paper is not None and paper.profile == "paper" and paper.params["epochs"] == 20
    assert len(paper.configs) == 60 and "cuda" in paper.made_on() and "60 runs" in paper.made_on()
    monkeypatch.setenv("REVISIT_BN_RESULTS", str(tmp_path))  # an empty store
    assert experiments.stored_profile("31-mnist-batch-construction", "paper") is None
    assert "60 of its 60 runs missing" in " ".join(capsys.readouterr().out.split())  # wrapped to the output box
    with pytest.raises(ValueError, match="stored profiles"):
        experiments.stored_profile("31-mnist-batch-construction", "ci")
    with pytest.raises(ValueError, match="unknown chapter"):
        experiments.stored_profile("31-mnist", "paper")


def test_a_stored_part_of_a_paper_profile_is_shown_without_its_missing_rest(capsys):
    # chapter 23's VGG runs at the paper's scale need a GPU; its deep linear network's are stored
    name = "23-internal-covariate-shift"
    assert experiments.stored_profile(name, "paper") is None
    assert "15 of its 60 runs missing" in " ".join(capsys.readouterr().out.split())
    part = experiments.stored_profile(name, "paper", where={"experiment": "santurkar_dln"})
    assert part is not None and {c.experiment for c in part.configs} == {"santurkar_dln"}
    assert len(part.configs) == 45 and {c.epochs for c in part.configs} == {part.params["dln_steps"]} == {1000}
    missing = experiments.stored_profile(name, "paper", where={"experiment": "santurkar_vgg"})
    assert missing is None and "15 of its 15 runs missing" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(ValueError, match="where=.*matches none"):
        experiments.stored_profile(name, "paper", where={"experiment": "mcsgd_convergence"})
    # beside reads only that part and prints the part's own scale line
    book = experiments.setup(name, {"profile": "book"})
    shown = experiments.beside(book, [], lambda run: [], where={"experiment": "santurkar_dln"},
                               scale_of=lambda run: experiments.dln_scale(run.params, run.profile))
    assert shown[0] is not None and shown[0].configs == part.configs
    assert "1000 steps" in " ".join(capsys.readouterr().out.split())


def test_beside_says_why_it_shows_no_other_scale(tmp_path, monkeypatch, capsys):
    at_paper = experiments.stored_profile("31-mnist-batch-construction", "paper")
    assert experiments.beside(at_paper, [], lambda run: pytest.fail("no check runs")) == (None, [])
    assert "rendered at the 'paper' profile already" in capsys.readouterr().out
    monkeypatch.setenv("REVISIT_BN_RESULTS", str(tmp_path))  # an empty store: the book profile's runs are not read
    at_book = experiments.ChapterRun(at_paper.chapter, "book", {}, [], tmp_path / "book")
    assert experiments.beside(at_book, [], lambda run: pytest.fail("no check runs")) == (None, [])
    assert "not in the results store yet" in capsys.readouterr().out


def test_the_tolerant_rule_compares_the_first_steps_and_only_finiteness_after():
    stored = np.array([2.0, 1.0, 0.5, 0.0, 0.0, 3.0], dtype=np.float32)
    assert tolerant_replay_match(stored, stored)
    later = stored.copy()
    later[3:] = [1e-3, 0.0, 2.0]  # grown rounding differences after the third update: not compared
    assert tolerant_replay_match(stored, later)
    diverged = later.copy()
    diverged[5] = np.nan  # finite where the stored run was finite, and only there
    assert not tolerant_replay_match(stored, diverged) and not tolerant_replay_match(diverged, later)
    assert tolerant_replay_match(diverged, diverged)
    for step, factor in ((0, 1 + 2e-5), (1, 1 + 2e-4), (2, 1.02)):
        changed = stored.copy()
        changed[step] *= factor
        assert not tolerant_replay_match(stored, changed), step


def test_make_results_can_compute_one_experiment_of_a_chapter(results_root):
    # chapter 23's deep linear network without its VGG runs: what a CPU computes of its paper profile
    name = "23-internal-covariate-shift"
    dln = [c for c in experiments.CHAPTERS[name].configs("ci") if c.experiment == "santurkar_dln"]
    assert dln and len(dln) < len(experiments.CHAPTERS[name].configs("ci"))
    log = results_root.parent / "log.txt"
    assert commands.compute_missing("ci", [name], out=open(log, "w"), experiments=["santurkar_dln"]) == len(dln)
    assert sorted(p.name for p in (results_root / "ci").iterdir() if p.name != "claims") == ["santurkar_dln"]
    assert commands.main(["results", "--profile", "ci", "--chapter", name, "--experiment", "santurkar_dln"]) == 0


def test_step_sizes_are_chosen_on_the_validation_split_then_the_chapter_runs_at_them(results_root):
    # chapter 31's ci profile tunes: stage 1 lists only the tuning runs; once stored, each method's step size
    # is the one with the lowest validation loss, and stage 2 lists the chapter's runs at it
    name = "31-mnist-batch-construction"
    spec = experiments.CHAPTERS[name]
    params = experiments.resolve(spec, "ci")
    tuning = spec.tune(params)
    stage1 = spec.configs("ci")
    assert stage1 == tuning.runs and all(c.validation_size == 500 for c in stage1)
    assert {c.lr for c in stage1} == {0.01, 0.05} and {c.seed for c in stage1} == {0}
    assert commands.compute_missing("ci", [name], out=open(results_root.parent / "log.txt", "w")) > len(stage1)
    choice = tuning.choose(results_root / "ci")
    table = choice.table
    for method, part in table.groupby("method"):
        best = part.sort_values(["val_loss", "lr"]).iloc[0]
        assert choice[method] == best.lr and part.loc[part.chosen, "lr"].tolist() == [best.lr]
    final = [c for c in spec.configs("ci") if c not in set(stage1)]
    assert final and all(c.lr == choice[chapters._method_31(c)] for c in final)
    assert {c.seed for c in final} == {1}  # seed 0's run at the chosen step size is its tuning run
    chapter = experiments.setup(name, {"profile": "ci"})
    assert chapter.step_sizes.chosen == choice.chosen and set(chapter.configs) <= set(spec.configs("ci"))


def test_a_step_size_at_which_a_run_diverged_never_wins(results_root, monkeypatch):
    configs = [TrainConfig(experiment="unit", dataset="large_variance", model="logreg", epochs=1, lr=lr, seed=s,
                           validation_size=200) for lr in (0.01, 0.1, 1.0) for s in (0, 1)]
    losses = {(0.01, 0): 0.5, (0.01, 1): 0.5, (0.1, 0): 0.2, (0.1, 1): None, (1.0, 0): 0.5, (1.0, 1): 0.5}
    state = {"now": "current"}

    def fake_run_state(config, root=None, report=None):
        value = losses[(config.lr, config.seed)]
        return state["now"], {"params": {}, "metrics": {"val_loss": [value]}, "provenance": {}, "steps": {},
                              "status": "ok" if value is not None else "diverged",
                              "diverged_at": 0 if value is None else None}

    import revisit_bn.specs as E  # where Tuning reads the store

    monkeypatch.setattr(E, "run_state", fake_run_state)
    choice = E.Tuning(configs, lambda c: "logreg").choose(results_root)
    assert choice["logreg"] == 0.01  # 0.1 has the lowest loss in one seed, but its other diverged; a tie: the smaller
    assert choice.table.set_index("lr").loc[0.1, "diverged"] == 1
    # tuning runs stored under other code: no choice for a notebook (they wait for make migrate), but the runs at the
    # step sizes they chose stay needed for the store's bookkeeping (stale_ok)
    state["now"] = "stale"
    assert E.Tuning(configs, lambda c: "logreg").choose(results_root) is None
    assert E.Tuning(configs, lambda c: "logreg").choose(results_root, stale_ok=True)["logreg"] == 0.01
    state["now"] = "missing"
    assert E.Tuning(configs, lambda c: "logreg").choose(results_root, stale_ok=True) is None


def test_an_edge_pick_widens_the_grid_until_the_choice_is_inside_it(results_root, monkeypatch):
    # validation loss falls towards larger step sizes up to 0.4 for "a"; "b" is best inside the grid
    best = {"a": 0.4, "b": 0.05}
    configs = [TrainConfig(experiment="unit", dataset="large_variance", model="logreg", epochs=1, lr=lr, seed=s,
                           momentum=m, validation_size=200) for m in (0.0, 0.9) for lr in (0.025, 0.05, 0.1)
               for s in (0, 1)]
    method = {0.0: "a", 0.9: "b"}
    stored = set(configs)

    def fake_run_state(config, root=None, report=None):
        if config not in stored:
            return "missing", None
        value = abs(math.log(config.lr / best[method[config.momentum]]))
        return "current", {"params": {}, "metrics": {"val_loss": [value]}, "provenance": {}, "steps": {},
                           "status": "ok", "diverged_at": None}

    import revisit_bn.specs as E

    monkeypatch.setattr(E, "run_state", fake_run_state)
    tuning = E.Tuning(configs, lambda c: method[c.momentum], widen=2.0)
    runs, choice = tuning.stages(results_root)
    added = [c for c in runs if c not in set(configs)]
    assert choice is None and {(c.momentum, c.lr, c.seed) for c in added} == {(0.0, 0.2, 0), (0.0, 0.2, 1)}
    stored.update(added)
    runs, choice = tuning.stages(results_root)
    assert choice is None and {c.lr for c in runs if c not in stored} == {0.4}  # 0.2 won again: once more
    stored.update(runs)
    runs, choice = tuning.stages(results_root)  # 0.4 wins, at the edge, but max_widen (2) is reached
    assert choice["a"] == 0.4 and choice["b"] == 0.05 and set(runs) == stored
    assert set(choice.runs) == stored and len(choice.table) == 3 + 5
    # without widen the grid is final: the edge pick stands
    assert E.Tuning(configs, lambda c: method[c.momentum]).choose(results_root)["a"] == 0.1
    # a stored downward edge widens downward
    best["b"] = 0.001
    stored = set(configs)
    runs, choice = E.Tuning(configs, lambda c: method[c.momentum], widen=2.0, max_widen=1).stages(results_root)
    assert {(c.momentum, c.lr) for c in runs if c not in stored} == {(0.0, 0.2), (0.9, 0.0125)}
    one = [c for c in configs if c.lr == 0.1]  # a one-step-size grid is not widened
    assert E.Tuning(one, lambda c: method[c.momentum], widen=2.0).stages(results_root)[0] == one
    for bad, message in ((dict(widen=1.0), "factor above 1"), (dict(widen=float("inf")), "factor above 1"),
                         (dict(widen=2.0, views=lambda c: []), "views"), (dict(max_widen=0), "positive integer")):
        with pytest.raises(ValueError, match=message):
            E.Tuning(configs, lambda c: "x", **bad)


def test_a_code_edit_keeps_a_tuned_chapters_chosen_runs_needed(monkeypatch):
    # chapter 39 chooses its step sizes on stored tuning runs: after an edit, every one of its runs is stale, none orphaned
    monkeypatch.setattr(results, "code_fingerprint", lambda: "0123456789ab")
    states = commands.run_states("book")
    skew = [p for p in states["stale"] if p.parent.name == "distributed_label_skew"]
    assert len(skew) == len(list((BOOK / "distributed_label_skew").glob("*.json.gz"))) > 15
    assert not states["orphaned"]


def test_status_counts_the_next_scale_per_chapter(results_root, monkeypatch):
    import io

    from revisit_bn.store import run

    unit = TrainConfig(experiment="unit", dataset="large_variance", model="logreg", epochs=1, lr=0.01)
    book, tuned, grown = unit, unit.replace(seed=1), unit.replace(seed=2)
    needs = {"book": [("31-x", book)], "next": [("31-x", book), ("35-y", tuned), ("35-y", grown)]}
    monkeypatch.setattr(commands, "profile_configs", lambda profile, chapters=None, stale_ok=False: needs[profile])
    monkeypatch.setattr(commands, "kept_configs", lambda profile: needs["book"] + needs["next"])
    for config in (book, tuned):
        run(config, root=results_root / "book")
    out = io.StringIO()
    commands.status("book", out=out)
    text = out.getvalue()
    assert "profile 'book': 1 runs needed, 1 current" in text
    assert "next book scale: 3 runs, 2 stored" in text and ", 1 missing" in text
    assert "  31-x: 1 runs, 1 stored (" in text and "  35-y: 2 runs, 1 stored (" in text and "min), 1 missing" in text
    # the missing run is projected from the stored runs of its kind (the same network, data and length)
    assert "min), 1 missing; the rest projected at " in text and "projected compute left: " in text and "for 1 runs" in text


_CIFAR = TrainConfig(experiment="cifar_batch_construction", dataset="cifar10", model="vgg11", width=0.25, batch_size=128,
                     epochs=30, norm="bn", validation_size=5000)


def _payload(seconds: float, **changes) -> dict:
    return {"params": _CIFAR.replace(**changes).key_params(), "provenance": {"seconds": seconds}}


def test_a_missing_runs_cost_is_projected_from_stored_runs_of_its_kind():
    costs = commands._RunCosts([_payload(600.0), _payload(1800.0, norm="gn"), _payload(6000.0, seed=1), None,
                                _payload(120.0, batch_size=32, epochs=3)])
    cifar = _CIFAR.replace(norm="fn")
    # any norm of the kind: the fastest run (idle cores) and the median, whole runs
    assert costs.minutes(cifar) == ((10.0, 30.0), False)
    # another length: per training image and epoch (45,000 images held in, validation out), from the same batch size
    (fastest, median), scaled = costs.minutes(cifar.replace(epochs=60))
    assert (fastest, median, scaled) == (pytest.approx(20.0), pytest.approx(60.0), True)
    # another batch size: the batch-32 run, its 3 epochs scaled to 30
    assert costs.minutes(cifar.replace(batch_size=32))[0] == (pytest.approx(20.0), pytest.approx(20.0))
    # a batch size never stored, on 22,500 training images (train_subset counts them after the validation split):
    # every batch size's runs per image and epoch (fastest 600 s / (45,000 x 30), median of 600/1,350,000,
    # 1800/1,350,000, 6000/1,350,000, 120/135,000)
    assert costs.minutes(cifar.replace(batch_size=64, train_subset=22500))[0] == (
        pytest.approx(600 / 1.35e6 * 22500 * 30 / 60), pytest.approx((1800 / 1.35e6 + 120 / 1.35e5) / 2 * 22500 * 30 / 60))
    assert commands.training_images({"dataset": "cifar10", "validation_size": 5000, "train_subset": 50000}) == 45000
    # no stored run of its kind: not estimated, and counted apart
    mnist = TrainConfig(experiment="x", dataset="mnist", model="simple", epochs=1)
    assert costs.minutes(mnist) == (None, False)
    assert costs.projection([cifar, cifar, mnist]) == (pytest.approx(20.0), pytest.approx(60.0), 0, 1)


def test_a_tuned_chapters_later_runs_are_projected_before_its_step_sizes_are_chosen(results_root):
    # chapter 31 at the ci profile chooses on seed 0: in an empty store, its runs on seed 1 are still to come
    later = commands._after_tuning("31-mnist-batch-construction", "ci", results_root / "ci")
    spec = chapters.chapter("31-mnist-batch-construction")
    params = experiments.resolve(spec, "ci")
    assert later and {c.seed for c in later} == {1}
    assert len(later) == len([c for c in spec.grid(params) if c.seed == 1])
    assert not set(later) & set(spec.tune(params).runs)
    # a chapter that does not tune, or an unknown one, adds none
    assert commands._after_tuning("33-large-variance", "ci", results_root / "ci") == []
    assert commands._after_tuning("35-y", "ci", results_root / "ci") == []
