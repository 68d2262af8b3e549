"""How closely runs made on other arithmetic (a GPU, another kind of CPU) replay here, and whether the
replay rule still sees a changed step size.

Usage: ``.tools/bin/uv run python benchmarks/replay_tolerance.py [--profile paper] [--lr-factor 1.1]``

For every stored run of ``profile`` that :func:`revisit_bn.store.replay_rule` replays under the
tolerant rule (made on a GPU, or on a CPU other than this one), retrains its first
``replay_steps`` SGD steps here (as :func:`revisit_bn.store.replay` does) and once more with the
step size times ``lr-factor``, and prints: where the runs were made; the largest difference at
each step (relative; after an update, to ``REPLAY_ATOL + |stored|``) and the largest share of
the rule's allowance it used; how many runs the rule passes; and how many of the
changed-step-size replays it rejects (with the experiments of those it cannot tell apart). The
tolerances in :mod:`revisit_bn.store` rest on this output (kept as
``replay_tolerance_<profile>.txt`` beside this file). Not a test: it takes minutes.
"""

import argparse
import collections
import dataclasses

import numpy as np

from revisit_bn import results
from revisit_bn.store import (REPLAY_ATOL, REPLAY_RTOLS, config_from_params, replay_allowance, replay_rule,
                              tolerant_replay_match as passes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="paper", choices=results.PROFILES)
    parser.add_argument("--lr-factor", type=float, default=1.1)
    args = parser.parse_args()
    worst, failed, blind = None, [], collections.Counter()
    made_on, caught = collections.Counter(), 0
    for path in results.stored_runs(results.results_root(args.profile)):
        payload = results.validate(path)
        prov = payload["provenance"]
        if replay_rule(prov) != "tolerant":
            continue
        made_on[prov.get("gpu") or prov.get("cpu") or "a CPU not recorded"] += 1
        k = payload["replay_steps"]
        stored = np.array([np.nan if v is None else v for v in payload["steps"]["train_loss"][:k]], dtype=np.float32)
        config = config_from_params(payload["params"])
        replayed = np.array(config.compute(progress=False, max_steps=k)["steps"]["train_loss"][:k], dtype=np.float32)
        changed = dataclasses.replace(config, lr=config.lr * args.lr_factor)
        other = np.array(changed.compute(progress=False, max_steps=k)["steps"]["train_loss"][:k], dtype=np.float32)
        s64, r64 = stored.astype(np.float64), replayed.astype(np.float64)
        finite = np.isfinite(s64) & np.isfinite(r64)
        diff = np.where(finite, np.abs(r64 - s64), 0.0)
        floor = np.where(np.arange(k) == 0, 0.0, REPLAY_ATOL)  # after an update, relative to 1e-6 nats + |stored|
        rel = np.where(finite, diff / np.maximum(floor + np.abs(s64), 1e-30), 0.0)
        used = np.where(finite, diff / replay_allowance(np.where(finite, s64, 0.0)), 0.0)
        worst = [rel, used] if worst is None else [np.maximum(worst[0], rel), np.maximum(worst[1], used)]
        label = f"{path.parent.name}/{results.run_key(path)} ({config.label()})"
        if not passes(stored, replayed):
            failed.append(label)
        if passes(stored, other):
            blind[path.parent.name] += 1
        else:
            caught += 1
    count = sum(made_on.values())
    print(f"profile '{args.profile}': {count} runs made on other arithmetic, replayed on {results.cpu_arithmetic()}")
    for where, n in made_on.most_common():
        print(f"  {n} made on {where}")
    if not count:
        return
    print("largest difference at each step (relative; after an update, to 1e-6 nats + |stored|) and the largest\n"
          "share of the rule's allowance it used:")
    for step, (rel, used) in enumerate(zip(*worst)):
        print(f"  loss {step} ({'before any update' if step == 0 else f'after update {step}'}): {rel:.1e}, "
              + (f"{used:.1%} of the allowance" if step < len(REPLAY_RTOLS) else "no bound (finiteness only)"))
    print(f"the rule passes {count - len(failed)} of {count} replays")
    for label in failed:
        print(f"  fails: {label}")
    print(f"step size x{args.lr_factor:g}: the rule rejects {caught} of {count}; it passes "
          + (", ".join(f"{n} of {name}" for name, n in sorted(blind.items())) or "none"))


if __name__ == "__main__":
    main()
