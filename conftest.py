"""How ``make test`` spreads the suite over the machine's cores (pytest-xdist, ``-n auto``).

nbval executes a notebook's cells one after another in one kernel, so the cells of a notebook
must reach one worker whole and in order (nbval's README, "Parallel execution", asks for
``--dist loadscope``). ``loadscope`` would also bind every test of a module to one worker, and
``tests/test_notebooks.py`` holds the suite's longest tests (every chapter's ci run). So the
scheduler here is xdist's ``LoadScopeScheduling`` with one scope per notebook and one per test
elsewhere.
(``--dist loadgroup`` with an ``xdist_group`` mark would say the same, but pytest-xdist 3.8.0
renames node ids through an attribute pytest 9 no longer reads, so its groups are ignored.)

Two workers that train at once each run torch's OpenMP threads (a run's ``threads``, 2 by
default) on the same cores. With OpenMP's default wait policy a waiting thread spins: chapter 14's
ci run took 95 s beside another worker against 16 s alone, and the suite 42 minutes against 20
serially. ``OMP_WAIT_POLICY=PASSIVE`` (set here, before any worker, kernel or torchrun process
starts; they inherit it) makes a waiting thread sleep: 16 s, and the suite 16 minutes. It changes
when threads wait, never what they compute (``benchmarks/omp_wait_policy.py`` measures both
policies, alone and two processes at once).
"""

import os

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

NOTEBOOK_CELL = ".ipynb::"


def scope_of(nodeid: str) -> str:
    """The unit one worker runs whole: a notebook's path for its cells, else the test itself."""
    head, sep, _ = nodeid.partition(NOTEBOOK_CELL)
    return head + ".ipynb" if sep else nodeid


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: absent when xdist is not loaded
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class NotebookScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return NotebookScheduling(config, log)
