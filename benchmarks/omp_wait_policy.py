"""BN's SGD step under OpenMP's two wait policies, alone and with a second training process beside it.

Usage: ``.tools/bin/uv run python benchmarks/omp_wait_policy.py [--repeats 10] [--threads 2]``

OpenMP reads ``OMP_WAIT_POLICY`` when torch loads, so each measurement is a fresh process: it
times the median BN step (forward, cross-entropy, backward, update; after warm-up) of the book's
three networks (``norm_step_ratios.NETWORKS``) with ``threads`` torch threads. Four settings:
``ACTIVE`` (a waiting thread spins; the default here) and ``PASSIVE`` (it sleeps), each alone and
with a second such process training at the same time on the same cores (the case of ``make test``'s
workers, or of tests beside ``make results``). Printed: each setting's step time over ``ACTIVE``
alone. The alone rounds alternate (A P A P) so that drift cancels. ``omp_wait_policy_cpu.txt``
beside this file is one run on two cores of an idle Intel Xeon: PASSIVE costs 12-24 % of a step
alone, and saves a factor of 2 to 8 when two processes train at once. Hence ``make results`` keeps
the default (one process per two cores, alone) and the test suite's ``conftest.py`` sets PASSIVE
(two workers at once). Not a test: the numbers depend on the machine.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(repeats: int, threads: int) -> None:
    """In a fresh process: the median BN step of each network, as JSON on stdout (seconds)."""
    import torch

    sys.path.insert(0, str(HERE))
    from norm_step_ratios import NETWORKS, interleaved_medians, model_for, sgd_step

    torch.set_num_threads(threads)
    medians = {}
    for label, model, width, batch, channels, side in NETWORKS:
        gen = torch.Generator().manual_seed(0)
        images = torch.randn(batch, channels, side, side, generator=gen)
        labels = torch.randint(0, 10, (batch,), generator=gen)
        step = sgd_step(model_for(model, "bn", width, channels, side).train(), images, labels)
        medians[label] = interleaved_medians({"bn": step}, repeats)["bn"]
    print(json.dumps(medians))


def measure(policy: str, processes: int, repeats: int, threads: int) -> dict:
    """Start ``processes`` children at once under ``policy``; the first child's medians."""
    env = dict(os.environ, OMP_WAIT_POLICY=policy)
    command = [sys.executable, __file__, "--child", "--repeats", str(repeats), "--threads", str(threads)]
    running = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    outputs = [p.communicate()[0] for p in running]
    if any(p.returncode for p in running):
        raise RuntimeError(f"a child under OMP_WAIT_POLICY={policy} failed")
    return json.loads(outputs[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.repeats, args.threads)
        return
    alone = {"ACTIVE": [], "PASSIVE": []}
    for policy in ("ACTIVE", "PASSIVE", "ACTIVE", "PASSIVE"):
        alone[policy].append(measure(policy, 1, args.repeats, args.threads))
    base = {k: statistics.mean(r[k] for r in alone["ACTIVE"]) for k in alone["ACTIVE"][0]}
    rows = {"ACTIVE alone": base,
            "PASSIVE alone": {k: statistics.mean(r[k] for r in alone["PASSIVE"]) for k in base},
            "ACTIVE, 2 processes": measure("ACTIVE", 2, args.repeats, args.threads),
            "PASSIVE, 2 processes": measure("PASSIVE", 2, args.repeats, args.threads)}
    print(f"BN step time over ACTIVE alone; {args.threads} torch threads a process, "
          f"{os.cpu_count()} CPUs, median of {args.repeats} steps")
    print(f"{'setting':22s}" + "".join(f"{k:>26s}" for k in base))
    for name, medians in rows.items():
        print(f"{name:22s}" + "".join(f"{medians[k] / base[k]:26.2f}" for k in base))
    print(f"{'ACTIVE alone, ms/step':22s}" + "".join(f"{1e3 * base[k]:26.1f}" for k in base))


if __name__ == "__main__":
    main()
