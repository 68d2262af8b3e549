"""Chapter 38's checks and grid on constructed frames: rows read at each method's own step size, grouping-free methods'
microbatch rows from their shuffled runs, and each claim's category by its registered rule and gates."""

import math

import pandas as pd
import pytest

from revisit_bn import checks_successors as cs
from revisit_bn import chapters as ex
from revisit_bn.registry import claim

SETTINGS = ["single_label", "shuffled", "micro2", "micro4"]
# final test accuracy per (method, setting); grouping-free methods have no microbatch entry (their runs are shuffled)
ACC = {("none", "single_label"): 0.96, ("none", "shuffled"): 0.97,
       ("bn", "single_label"): 0.20, ("bn", "shuffled"): 0.975, ("bn", "micro2"): 0.94, ("bn", "micro4"): 0.96,
       ("bn_precise", "single_label"): 0.50, ("bn_precise", "shuffled"): 0.975, ("bn_precise", "micro2"): 0.95,
       ("bn_precise", "micro4"): 0.96,
       ("brn", "single_label"): 0.30, ("brn", "shuffled"): 0.975, ("brn", "micro2"): 0.95, ("brn", "micro4"): 0.96,
       ("fn", "single_label"): 0.90, ("fn", "shuffled"): 0.97, ("fn", "micro2"): 0.96, ("fn", "micro4"): 0.965,
       ("fn_decoupled", "single_label"): 0.965, ("fn_decoupled", "shuffled"): 0.97, ("fn_decoupled", "micro2"): 0.965,
       ("fn_decoupled", "micro4"): 0.97,
       ("gn", "single_label"): 0.95, ("gn", "shuffled"): 0.97, ("frn", "single_label"): 0.95, ("frn", "shuffled"): 0.97,
       ("evonorm", "single_label"): 0.95, ("evonorm", "shuffled"): 0.97,
       ("online", "single_label"): 0.95, ("online", "shuffled"): 0.972,
       ("mabn", "single_label"): 0.5, ("mabn", "shuffled"): 0.97, ("mabn", "micro2"): 0.945, ("mabn", "micro4"): 0.96}
PRECISE_LR = 0.03  # BN's precise statistics chose another step size than BN in the single-label setting


def _step_sizes():
    sizes = {(m, s): 0.01 for m, s in ACC}
    sizes[("bn_precise", "single_label")] = PRECISE_LR
    for m in ex.GROUPING_FREE:  # a grouping-free method is tuned in the shuffled setting only
        assert (m, "micro2") not in sizes
    return sizes


def _frame(seeds=(0, 1, 2, 3, 4), jitter=0.002):
    rows, sizes = [], _step_sizes()
    for i, ((method, setting), acc) in enumerate(ACC.items()):
        if method == "bn_precise":
            continue
        order, group = ex.SETTINGS_38[setting]
        lrs = {sizes[(method, setting)]} | ({sizes[("bn_precise", setting)]} if method == "bn" else set())
        for lr in lrs:
            for s in seeds:
                for epoch in (1, 2):
                    value = acc + jitter * ((s * (i + 1)) % 3 - 1) - (0.05 if epoch == 1 else 0.0)
                    wrong = 0.3 if lr != sizes[(method, setting)] else 0.0  # a row at the other step size: never read
                    row = dict(norm=method, batch_order=order, norm_group_size=group, lr=lr, seed=s, epoch=epoch,
                               status="ok", test_acc=value - wrong, test_loss=1 - value, val_loss=1 - value)
                    if method == "bn":
                        p = ACC[("bn_precise", setting)] + jitter * ((s * (i + 2)) % 3 - 1) - (0.05 if epoch == 1 else 0)
                        wrong = 0.3 if lr != sizes[("bn_precise", setting)] else 0.0
                        row.update(test_acc_precise=p - wrong, test_loss_precise=1 - p, val_loss_precise=1 - p)
                    rows.append(row)
    return pd.DataFrame(rows)


def test_cells_read_each_method_at_its_step_size_and_share_the_shuffled_runs():
    table = cs.cells(_frame(), _step_sizes())
    assert set(table.setting) == set(SETTINGS) and set(table.method) == set(ex.SUCCESSOR_METHODS)
    assert len(table) == len(ex.SUCCESSOR_METHODS) * len(SETTINGS) * 5
    precise = cs.per_seed(table, "bn_precise", "single_label")
    assert abs(precise.mean() - 0.50) < 0.003  # the precise metric at its own step size, not BN's 0.01 nor -0.3
    assert cs.per_seed(table, "gn", "micro2").tolist() == cs.per_seed(table, "gn", "shuffled").tolist()
    assert cs.best_other(table, "single_label") == "none"
    with pytest.raises(ValueError, match="no run of 'mabn' in setting 'micro2'"):
        cs.cells(_frame()[lambda f: ~((f.norm == "mabn") & (f.norm_group_size == 2))], _step_sizes())
    with pytest.raises(ValueError, match="lacks columns"):
        cs.cells(_frame().drop(columns="status"), _step_sizes())


def test_the_five_verdicts_follow_their_rules():
    table = cs.cells(_frame(), _step_sizes())
    verdicts = cs.verdicts(table, "test scale")
    assert [v.claim_id for v in verdicts] == ["wu-precisebn", "wu-he-gn-batch2", "chiley-online-norm",
                                              "yan-mabn-small-batch", "fn-vs-successors"]
    assert all(claim(v.claim_id).chapter == "38-successors" for v in verdicts)
    by = {v.claim_id: v.category for v in verdicts}
    assert by["wu-precisebn"] == "reproduced"  # 0.50 vs 0.20
    assert by["wu-he-gn-batch2"] == "reproduced"  # GroupNorm 0.97 (its shuffled runs) vs BN 0.94 at microbatches of 2
    assert by["chiley-online-norm"] == "reproduced"  # 0.975 - 0.972 = 0.003 < 0.01
    assert by["yan-mabn-small-batch"] == "contradicted"  # 0.945 vs 0.94: half a point, the interval below 1
    assert by["fn-vs-successors"] == "reproduced"  # FN decoupled 0.965 against the best other, 0.96
    assert all(v.seeds == 5 for v in verdicts)


def test_failed_gates_and_diverged_runs_leave_verdicts_inconclusive():
    frame = _frame()
    frame.loc[(frame.norm == "bn") & (frame.batch_order == "shuffled"), "test_acc"] = 0.9  # BN did not learn
    table = cs.cells(frame, _step_sizes())
    verdicts = cs.verdicts(table, "test scale")
    assert {v.category for v in verdicts[:4]} == {"inconclusive"}
    assert "gate: BN's test accuracy, shuffled batches 0.900 (< 0.950, failed)" in verdicts[0].measured
    frame = _frame()
    frame.loc[(frame.norm == "gn") & (frame.seed == 3), "test_acc"] = math.nan  # a diverged run
    verdict = cs.check_gn_small_batch(cs.cells(frame, _step_sizes()), "test scale")
    assert verdict.category == "inconclusive" and "a run diverged" in verdict.measured
    with pytest.raises(ValueError, match="dataset must be"):
        cs.learnability_gate("svhn")


def test_the_summary_gives_a_mean_and_interval_per_method_and_setting():
    shown = cs.summary(cs.cells(_frame(), _step_sizes()))
    assert list(shown.columns) == ["one label per batch", "shuffled", "microbatches of 2", "microbatches of 4"]
    assert shown.loc["BN (precise statistics)", "one label per batch"].startswith("0.50")
    low, high = shown.loc["BN", "shuffled"].split("[")[1].rstrip("]").split(", ")
    assert float(low) < 0.975 < float(high)


def test_chapter_38_tunes_each_method_per_setting_and_runs_grouping_free_methods_once():
    spec = ex.chapter("38-successors")
    p = spec.profiles["book"]
    tuning = ex._tune_38(p)
    assert len(tuning.runs) == 30 * len(p["lr_grid"])  # 5 grouping-dependent methods x 4 settings + 5 x 2
    assert all(c.validation_size == 5000 and c.seed == 0 for c in tuning.runs)
    bn = next(c for c in tuning.runs if c.norm == "bn")
    assert bn.precise_bn and ex._views_38(bn) == [(("bn", "single_label"), "val_loss"),
                                                   (("bn_precise", "single_label"), "val_loss_precise")]
    sizes = {key: 0.03 for key in {(m, s) for m, s in ex._cells_38(p)}}
    sizes[("bn_precise", "micro2")] = 0.1
    grid = ex._grid_38(p, sizes)
    assert len(grid) == (30 + 1) * 5  # BN's runs at its own and at the precise statistics' step size in one setting
    assert {c.lr for c in grid if c.norm == "bn" and c.norm_group_size == 2} == {0.03, 0.1}
    assert not any(c.norm_group_size for c in grid if c.norm in ex.GROUPING_FREE)
    assert {ex.setting_38(c) for c in grid} == set(SETTINGS)
    with pytest.raises(ValueError, match="parameter methods holds"):
        ex._grid_38({**p, "methods": ["bn", "lrn"]})
    with pytest.raises(ValueError, match="must hold 'shuffled'"):
        ex._grid_38({**p, "settings": ["single_label"]})


def test_the_reader_table_and_recommendation_come_from_the_runs():
    table = cs.cells(_frame(), _step_sizes())
    needs = cs.evaluation_needs()
    assert list(needs.index)[:3] == ["no normalization", "BN", "BN (precise statistics)"]
    assert needs.loc["GroupNorm", "as in training"] == "yes" and needs.loc["BN", "as in training"].startswith("no")
    with pytest.raises(ValueError, match="are not chapter 38's"):
        cs.evaluation_needs(["bn", "lrn"])
    words = cs.recommendation(table).splitlines()
    assert len(words) == 4 and words[0].startswith("- **one label per batch**: FN (decoupled) 0.96")
    assert "more than a point below: " in words[0] and "BN," in words[0]
    shuffled = table[table.setting == "shuffled"]
    best = shuffled.groupby("method").test_acc.mean().max()
    assert f"{best:.3f} is the highest" in words[1]


def test_the_figure_has_a_panel_per_setting_and_a_row_per_method():
    from revisit_bn import plots

    figure = plots.by_setting(cs.cells(_frame(), _step_sizes()))
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["one label per batch", "shuffled", "microbatches of 2",
                                                  "microbatches of 4"]
    assert [t.get_text() for t in visible[0].get_yticklabels()][:2] == ["no normalization", "BN"]
    assert len(visible[0].get_yticklabels()) == len(ex.SUCCESSOR_METHODS)


def test_the_cost_table_reads_the_kept_benchmark_outputs():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "benchmarks"
    step, memory = (root / "norm_step_ratios_cpu.txt").read_text(), (root / "norm_memory_ratios_cpu.txt").read_text()
    table = cs.costs(step, memory)
    assert list(table.columns.levels[0]) == ["memory over BN's", "step time over BN's"]
    assert table.shape == (len(ex.SUCCESSOR_METHODS), 6)
    bn = table.loc["BN"]
    assert (bn == 1.0).all() and (table.loc["BN (precise statistics)"] == bn).all()  # it trains as BN
    assert table.loc["no normalization"].isna().all()  # not benchmarked
    # a method over the target on one network is named with its ratios; a table within it says so
    ratios = table.copy()
    ratios.loc[:, :] = 1.0
    assert cs.cost_misses(ratios).startswith("every method's step is within 1.10")
    ratios.loc["MABN", ("step time over BN's", "ResNet18")] = 1.25
    assert cs.cost_misses(ratios) == "over 1.10 times BN's step on VGG11 or ResNet18: MABN 1.00 (VGG11), 1.25 (ResNet18)"
    with pytest.raises(ValueError, match="step_text: no table header"):
        cs.costs("not a benchmark output", memory)
    with pytest.raises(ValueError, match=r"memory_text: rows for \['ResNet18, batch 64'\] missing"):
        cs.costs(step, "\n".join(memory.splitlines()[:4]))
    with pytest.raises(ValueError, match="not chapter 38's"):
        cs.costs(step, memory, methods=["layer_norm"])


def test_the_batch_one_sentence_reads_the_kept_line_and_names_who_meets_the_target():
    from pathlib import Path

    kept = (Path(__file__).resolve().parents[1] / "benchmarks" / "norm_step_ratios_cpu.txt").read_text()
    text = cs.batch_one_text(kept)
    assert text.startswith("FN (MCSGD) ") and "FN (decoupled) " in text and "EvoNorm-S0 " in text
    line = ("SimpleNet, batch 1, over the unnormalized step (target <= 1.5): fn 1.40, fn_decoupled 1.94, online 3.56; "
            "unnormalized 0.44 ms/step")
    assert cs.batch_one_text(line, methods=("fn", "fn_decoupled")) == (
        "FN (MCSGD) 1.40, FN (decoupled) 1.94 (within the 1.5 target: FN (MCSGD))")
    assert cs.batch_one_text(line, methods=("fn_decoupled",)).endswith("(every one over the 1.5 target)")
    with pytest.raises(ValueError, match="lists no \\['mabn'\\]"):
        cs.batch_one_text(line, methods=("mabn",))
    with pytest.raises(ValueError, match="no 'SimpleNet, batch 1' line"):
        cs.batch_one_text("network bn")
