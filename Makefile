# Thin wrappers around the README's commands. Everything is installed from the project's own
# files: uv (pinned) into .tools/, then the locked environment (uv.lock) into .venv/.
UV_VERSION := 0.13.8
UV := .tools/bin/uv
RUN := $(UV) run --frozen
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
PYTEST_NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: setup book test notebooks clean

$(UV):
	python3 -m venv .tools
	.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

setup: $(UV)  ## create .venv from uv.lock (no other install step)
	$(UV) sync --frozen

book: setup  ## render the stored, executed notebooks to _build/html (no re-execution)
	$(RUN) jupyter-book build book --path-output .
	@echo "Book: $(CURDIR)/_build/html/index.html"

# Unit tests, the -W book build, and nbval over every notebook. Results go to a fresh folder so
# that nbval re-trains and compares, instead of reading runs cached by an earlier execution.
test: setup  ## every test
	REVISIT_BN_RESULTS=$$(mktemp -d) $(RUN) pytest $(PYTEST_NBVAL) tests notebooks

notebooks: setup  ## re-execute every notebook in place with its stored parameters (reuses cached runs)
	@for nb in $(NOTEBOOKS); do echo "papermill $$nb"; $(RUN) papermill --cwd notebooks "$$nb" "$$nb" || exit 1; done

clean:
	rm -rf _build book/_build
