# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PORT   ?= 8000
SEEDS  ?= ../shared/seeds
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# checkov and bandit (tests/test_static_scans.py) live in their own venv: checkov's pins (packaging<24,
# python-dateutil<3 through botocore) conflict with constraints.txt.
SCAN_VENV  ?= .venv-scan
SCAN_STAMP := $(SCAN_VENV)/.installed-stamp

.PHONY: install run test test-fast bench profile screenshot graph lint format openapi cite manifest lock clean

# Creates or reuses .venv; reinstalls when the dependency files change.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# Creates or reuses .venv-scan; reinstalls when tools/scan-requirements.txt changes.
$(SCAN_STAMP): tools/scan-requirements.txt
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SCAN_VENV)/bin/python -m pip install --quiet -r tools/scan-requirements.txt
	touch $(SCAN_STAMP)

install: $(STAMP)

# Serves on 127.0.0.1:$(PORT) with gunicorn. With the source texts beside the project, every
# citation is verified against them at start-up. Without a credentials file it serves in open mode
# (TRIAGE_API_OPEN=true unless set); gunicorn reads and checks every setting and says which modes are on.
run: $(STAMP)
	TRIAGE_SOURCE_TEXTS_DIR=$(if $(wildcard $(SEEDS)),$(abspath $(SEEDS)),) PORT=$(PORT) \
		$(if $(TRIAGE_API_KEYS_FILE)$(TRIAGE_API_JWT_TRUST_FILE),,TRIAGE_API_OPEN=$${TRIAGE_API_OPEN:-true}) \
		exec $(BIN)/gunicorn -c deploy/gunicorn.conf.py 'service:create_app()'

# The live-server tests need nginx and redis-server, the benchmark smoke test wrk (installed here when missing and
# possible, else the exact command is printed).
test: $(STAMP) $(SCAN_STAMP)
	bash tools/ensure-debian-packages.sh nginx wrk chromium dot redis-server
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	SEEDS_DIR=$(abspath $(SEEDS)) SCAN_VENV=$(abspath $(SCAN_VENV)) $(BIN)/pytest

# The unit and Flask test-client tier in well under a minute, on both cores: no live servers, browser,
# SDKs, soak, benchmark, CLI subprocesses or scanners (pyproject.toml lists the markers), and property
# tests draw a tenth of their examples. For the edit-test loop; `make test` is the whole suite.
test-fast: $(STAMP)
	SEEDS_DIR=$(abspath $(SEEDS)) TEST_TIER=fast $(BIN)/pytest -n 2 -m "not (live or browser or sdk or soak or bench or cli or scan)"

# docs/performance.md and .png: HTTP against a control endpoint, engine scaling, zen-engine, batch,
# CDS Hooks, cold start; every figure beside its yardstick. Not a test: the machine is shared.
bench: $(STAMP)
	bash tools/ensure-debian-packages.sh wrk
	$(BIN)/python -m bench

# docs/knowledge-graph.svg, the knowledge guide's picture of the rules (a test fails when it is stale).
graph: $(STAMP)
	bash tools/ensure-debian-packages.sh dot
	$(BIN)/python -m service knowledge graph -o docs/knowledge-graph.svg

# docs/api-docs.png (the REST guide's picture of /docs) and docs/rule-page.png (the EHR guide's
# picture of a rule page): taken by the browser tests themselves.
screenshot: $(STAMP)
	DOCS_SCREENSHOT=$(CURDIR)/docs/api-docs.png PAGES_SCREENSHOT=$(CURDIR)/docs/rule-page.png \
		$(BIN)/python -m pytest -q tests/test_docs_browser.py tests/test_pages_browser.py

# Where a triage call spends its time, in process (pyinstrument); see docs/performance.md.
profile: $(STAMP)
	$(BIN)/python -m bench.profile

lint: $(STAMP)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Regenerate the committed OpenAPI document from the schemas.
openapi: $(STAMP)
	$(BIN)/python -m service.openapi > openapi.yaml

# Knowledge authoring (needs the source texts): rebuild the source manifest / fill citation spans.
manifest: $(STAMP)
	$(BIN)/python -m service knowledge manifest --texts $(SEEDS)
cite: $(STAMP)
	$(BIN)/python -m service knowledge cite --texts $(SEEDS)

lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^legraise-triage' > constraints.new
	{ head -1 constraints.txt; cat constraints.new; } > constraints.tmp && mv constraints.tmp constraints.txt && rm constraints.new

clean:
	rm -rf $(VENV) $(SCAN_VENV) .pytest_cache .ruff_cache .hypothesis
