# Thin wrappers around the README's commands. Everything is installed from the project's own
# files: uv (pinned) into .tools/, then the locked environment (uv.lock) into .venv/.
# A relative data root is made absolute here: notebooks run with their own folder as working directory.
ifdef REVISIT_BN_DATA
export REVISIT_BN_DATA := $(abspath $(REVISIT_BN_DATA))
endif

UV_VERSION := 0.13.8
UV := .tools/bin/uv
RUN := $(UV) run --frozen
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
PYTEST_NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

PROFILE ?= book

.PHONY: setup book test results verify status migrate notebooks clean

$(UV):
	python3 -m venv .tools
	.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

setup: $(UV)  ## create .venv from uv.lock (no other install step)
	$(UV) sync --frozen

book: setup  ## render the stored, executed notebooks to _build/html (no re-execution)
	$(RUN) jupyter-book build book --path-output .
	@echo "Book: $(CURDIR)/_build/html/index.html"

# Unit tests, the -W book build, the replay of a sample of stored runs, and nbval over every
# notebook against the committed results store (no training: a missing run stops its notebook).
test: setup  ## every test
	$(RUN) pytest -n auto --maxprocesses 8 $(PYTEST_NBVAL) tests notebooks

results: setup  ## compute every run of PROFILE (book, paper, ci, or next: a book scale computed across sessions) missing from the store, or only EXPERIMENT's; resumable
	$(RUN) python -m revisit_bn.commands results --profile $(PROFILE) $(if $(EXPERIMENT),--experiment $(EXPERIMENT))

verify: setup  ## replay the first SGD steps of every stored run of PROFILE and compare
	$(RUN) python -m revisit_bn.commands verify --profile $(PROFILE)

status: setup  ## how many runs of PROFILE are current, stale or missing; each chapter's compute, and the rest projected
	$(RUN) python -m revisit_bn.commands status --profile $(PROFILE)

migrate: setup  ## after a code edit: replay PROFILE's stale runs and record those that match (no run file changes)
	$(RUN) python -m revisit_bn.commands migrate --profile $(PROFILE)

notebooks: setup  ## re-execute every notebook in place with its stored parameters (reads the results store)
	@for nb in $(NOTEBOOKS); do echo "papermill $$nb"; $(RUN) papermill --cwd notebooks "$$nb" "$$nb" || exit 1; done

clean:
	rm -rf _build book/_build
