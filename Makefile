# Commands for a fresh machine; each creates .venv on first use.
#   make reproduce — the main job: every notebook on the embedded models, then the book (_build/html)
#   make test      — the whole test suite (CI runs this)
#   make demo      — a short command-line tour: table on train, DP, held-out bits/dim, samples
VENV ?= .venv
PY := $(VENV)/bin/python
export DDPMDP_DATA ?= $(abspath ../shared/data)

.PHONY: test demo venv bench clean book reproduce smoke chromium

$(VENV)/.installed: pyproject.toml requirements-lock.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -c requirements-lock.txt -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

test: $(VENV)/.installed chromium
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

# The browser test of the book needs Debian's chromium; install it when missing and possible.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not installed: the browser test will be skipped"; }

demo: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo.sh

reproduce: $(VENV)/.installed
	$(VENV)/bin/ddpmdp reproduce

smoke: $(VENV)/.installed
	$(VENV)/bin/ddpmdp reproduce --smoke

book: $(VENV)/.installed
	$(VENV)/bin/jupyter-book build --all -W -n --keep-going .

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_dp.py
	$(PY) benchmarks/bench_table.py
	$(PY) benchmarks/bench_sampling.py

clean:
	rm -rf runs _build
