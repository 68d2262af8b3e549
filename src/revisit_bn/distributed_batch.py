"""Several data-parallel runs in one ``torchrun`` launch: the workers start once and train the runs in turn.

A launch of :meth:`revisit_bn.distributed.DistributedConfig.compute` costs some seconds before its
first step (``torchrun`` and each worker import torch and torchvision, load the dataset, and meet at the
rendezvous); at the ``ci`` profile that is most of a run. :func:`compute_many` starts the ``K`` workers
once for a list of runs of the same ``K``, backend and thread count; each worker calls
:func:`revisit_bn.distributed.train_worker` for each run in turn, in one process group. Every run
starts from its own seed (``train_worker`` seeds before it builds anything), so its numbers are the
ones a launch of its own gives (``tests/test_distributed.py`` checks it, step by step); each run's
``seconds`` is its own training time, without the launch.

Notebooks at the ``ci`` profile and ``--recompute`` use it through
:func:`revisit_bn.store.run_many`; ``make results`` keeps one launch a run (each run claimed with its
lock file, see :mod:`revisit_bn.commands`).

Kept apart from :mod:`revisit_bn.distributed`, whose source is part of every distributed run's key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from .distributed import DistributedConfig, train_worker


def compute_many(configs: list[DistributedConfig], max_steps: int | None = None,
                 progress: bool = False) -> list[dict[str, Any]]:
    """Train ``configs`` in one ``torchrun`` launch; return each one's ``{"metrics", "steps", "tables",
    "seconds"}``, in order (as :meth:`DistributedConfig.compute` returns, plus the run's own seconds).

    Raises:
        ValueError: ``configs`` empty, not all :class:`DistributedConfig`, or not sharing ``workers``,
            ``backend`` and ``threads`` (one launch starts one set of workers).
        RuntimeError: a worker failed (the message ends with torchrun's last output), or NCCL without
            ``K`` GPUs.
    """
    if not configs or not all(isinstance(c, DistributedConfig) for c in configs):
        raise ValueError("configs must be a non-empty list of DistributedConfig runs")
    shared = {(c.workers, c.backend, c.threads) for c in configs}
    if len(shared) > 1:
        raise ValueError(f"configs must share workers, backend and threads to share a launch; got {sorted(shared)}: "
                         "group them first (group_by_launch)")
    first = configs[0]
    if first.uses_cuda and torch.cuda.device_count() < first.workers:
        raise RuntimeError(f"backend 'nccl' needs one GPU per worker: {first.workers} workers, "
                           f"{torch.cuda.device_count()} GPUs here; use backend='gloo'")
    with tempfile.TemporaryDirectory(prefix="revisit-bn-ddp-batch-") as tmp:
        spec_path, out_dir = Path(tmp) / "runs.json", Path(tmp) / "out"
        out_dir.mkdir()
        runs = [{"config": {f.name: getattr(c, f.name) for f in dataclasses.fields(c) if f.init},
                 "max_steps": max_steps} for c in configs]
        spec_path.write_text(json.dumps({"runs": runs}))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={first.workers}", "-m", "revisit_bn.distributed_batch",
                   str(spec_path), str(out_dir)]
        env = dict(os.environ, OMP_NUM_THREADS=str(first.threads))
        done = subprocess.run(command, env=env, capture_output=not progress, text=True)
        outs = [out_dir / f"{i}.json" for i in range(len(configs))]
        if done.returncode != 0 or not all(p.exists() for p in outs):
            tail = "" if progress else (done.stderr or "")[-3000:]
            raise RuntimeError(f"torchrun exited with {done.returncode} for {len(configs)} runs, the first "
                               f"{first.label()}:\n{tail}")
        return [json.loads(p.read_text()) for p in outs]


def group_by_launch(configs: list[DistributedConfig]) -> list[list[DistributedConfig]]:
    """``configs`` in groups that can share a launch (same ``workers``, ``backend``, ``threads``), in order of
    first appearance."""
    groups: dict[tuple, list[DistributedConfig]] = {}
    for c in configs:
        groups.setdefault((c.workers, c.backend, c.threads), []).append(c)
    return list(groups.values())


def main(argv: list[str] | None = None) -> int:
    """``python -m revisit_bn.distributed_batch RUNS.json OUT_DIR`` under torchrun: train each run in turn;
    rank 0 writes ``OUT_DIR/<i>.json`` for run ``i``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: torchrun --nproc-per-node K -m revisit_bn.distributed_batch RUNS.json OUT_DIR", file=sys.stderr)
        return 2
    runs = json.loads(Path(argv[0]).read_text())["runs"]
    configs = [DistributedConfig(**r["config"]) for r in runs]
    dist.init_process_group(configs[0].backend)
    try:
        for i, (config, spec) in enumerate(zip(configs, runs)):
            start = time.perf_counter()
            out = train_worker(config, spec.get("max_steps"))
            if out is not None:
                out["seconds"] = time.perf_counter() - start
                target = Path(argv[1]) / f"{i}.json"
                tmp = target.with_suffix(".partial")
                tmp.write_text(json.dumps(out))
                os.replace(tmp, target)
            dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
