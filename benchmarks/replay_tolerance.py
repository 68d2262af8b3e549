"""How closely runs made on other arithmetic (a GPU, another kind of CPU) replay here, and whether the
replay rule still sees a changed step size.

Usage: ``.tools/bin/uv run python benchmarks/replay_tolerance.py [--profile paper] [--lr-factor 1.1]``

For every stored run of ``profile`` that :func:`revisit_bn.store.replay_rule` replays under the
tolerant rule (made on a GPU, or on a CPU other than this one), retrains its first
``replay_steps`` SGD steps here (as :func:`revisit_bn.store.replay` does) and once more with the
step size times ``lr-factor``, and prints: where the runs were made, the largest relative
difference of the first loss (before any update), the largest difference of the later losses
relative to ``REPLAY_ATOL + |stored|``, how many runs the rule passes, and how many of the
changed-step-size replays it rejects. The tolerances in :mod:`revisit_bn.store` rest on this
output (kept as ``replay_tolerance_<profile>.txt`` beside this file). Not a test: it takes minutes.
"""

import argparse
import collections
import dataclasses

import numpy as np

from revisit_bn import results
from revisit_bn.store import (REPLAY_ATOL, REPLAY_FIRST_RTOL, REPLAY_RTOL, config_from_params, replay_rule,
                              tolerant_replay_match as passes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="paper", choices=results.PROFILES)
    parser.add_argument("--lr-factor", type=float, default=1.1)
    args = parser.parse_args()
    first, later, passed, caught, blind, failed = 0.0, 0.0, 0, 0, [], []
    made_on = collections.Counter()
    for path in results.stored_runs(results.results_root(args.profile)):
        payload = results.validate(path)
        prov = payload["provenance"]
        if replay_rule(prov) != "tolerant":
            continue
        made_on[prov.get("gpu") or prov.get("cpu") or "a CPU not recorded"] += 1
        k = payload["replay_steps"]
        stored = np.array(payload["steps"]["train_loss"][:k], dtype=np.float32)
        config = config_from_params(payload["params"])
        replayed = np.array(config.compute(progress=False, max_steps=k)["steps"]["train_loss"][:k], dtype=np.float32)
        changed = dataclasses.replace(config, lr=config.lr * args.lr_factor)
        other = np.array(changed.compute(progress=False, max_steps=k)["steps"]["train_loss"][:k], dtype=np.float32)
        first = max(first, float(abs(replayed[0] - stored[0]) / abs(stored[0])))
        later = max(later, float(np.max(np.abs(replayed[1:] - stored[1:]) / (REPLAY_ATOL + np.abs(stored[1:])))))
        if passes(stored, replayed):
            passed += 1
        else:
            failed.append(f"{path.parent.name}/{path.stem} ({config.label()})")
        if passes(stored, other):
            blind.append(f"{path.parent.name}/{path.stem} ({config.label()})")
        else:
            caught += 1
    count = sum(made_on.values())
    print(f"profile '{args.profile}': {count} runs made on other arithmetic, replayed on {results.cpu_arithmetic()}")
    for where, n in made_on.most_common():
        print(f"  {n} made on {where}")
    print(f"first loss: largest relative difference {first:.1e} (rule: {REPLAY_FIRST_RTOL:g})")
    print(f"later losses: largest difference over {REPLAY_ATOL:g} + |stored|: {later:.1e} (rule: {REPLAY_RTOL:g})")
    print(f"the rule passes {passed} of {count} replays")
    for label in failed:
        print(f"  fails: {label}")
    print(f"step size x{args.lr_factor:g}: the rule rejects {caught} of {count}; it passes")
    for label in blind:
        print(f"  {label}")


if __name__ == "__main__":
    main()
