# MangakAI: `make run` (a whole generation on the local stack) and `make test` (every test).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STACK_DIR := .run
STORY ?= samples/en/the_lighthouse_keeper.txt
PANELS ?= 6

.PHONY: install web run up down status test unit integration browser lint typecheck proto check-proto bench clean

## One Python package per folder, each with its own pyproject.toml and dependencies; all of them
## are installed editable into the one venv, with the workspace's dev and test extras (root
## pyproject.toml). A changed pyproject.toml re-installs.
PACKAGES := gen/python services/runtime services/gateway services/orchestrator services/renderer \
	services/storage clients/cli tools/devstack

$(STAMP): pyproject.toml $(PACKAGES:%=%/pyproject.toml) scripts/install-system-deps.sh
	./scripts/install-system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# A venv made before the split holds the former single distribution `mangakai`, which claimed the same packages.
	! $(BIN)/pip show --quiet mangakai 2>/dev/null || $(BIN)/pip uninstall --quiet --yes mangakai
	$(BIN)/pip install --quiet $(PACKAGES:%=-e %) -e '.[dev,test]'
	# IPAexGothic for PDF exports: only the package's font file, not matplotlib.
	$(BIN)/pip install --quiet --no-deps 'matplotlib-fontja>=1.1,<2'
	touch $(STAMP)

install: $(STAMP)

## The browser app (web/): npm ci from the committed lockfile, then TypeScript generated from
## proto/ by buf (protoc-gen-es), type-checked and bundled by Vite into web/dist/, which the
## gateway serves. Rebuilt when a source, the lockfile or a proto changes.
WEB_STAMP := web/node_modules/.installed
WEB_SOURCES := $(shell find web/src web/proto -path web/src/gen -prune -o -type f -print 2>/dev/null) \
	web/index.html web/vite.config.ts web/tsconfig.json web/buf.gen.yaml $(wildcard proto/mangakai/v1/*.proto) \
	$(wildcard samples/*/*.txt)

$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

web/dist/index.html: $(WEB_STAMP) $(WEB_SOURCES)
	cd web && npm run build

web: web/dist/index.html

## Start the whole mesh, send the sample story through the gateway, leave a PDF in out/.
run: install web
	$(BIN)/python -m mangakai_devstack up --dir $(STACK_DIR)
	$(BIN)/mangakai generate $(STORY) --panels $(PANELS) --out $(CURDIR)/out/manga.pdf --images-dir $(CURDIR)/out/panels
	@echo "The mesh is still running (make down stops it)."

## Start the mesh and leave it running for other clients: `make up REPLICAS=2 NATS_NODES=3` runs two
## processes of every service on a three-node NATS JetStream cluster.
REPLICAS ?= 1
NATS_NODES ?= 1
up: install web
	$(BIN)/python -m mangakai_devstack up --dir $(STACK_DIR) --replicas $(REPLICAS) --nats-cluster $(NATS_NODES)

down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m mangakai_devstack down --dir $(STACK_DIR); fi

status: install
	$(BIN)/python -m mangakai_devstack status --dir $(STACK_DIR)

## Every test: static checks, unit tests, integration tests against real servers, browser tests.
test: install check-proto lint web
	$(BIN)/pytest -q -p no:cacheprovider tests

unit: install
	$(BIN)/pytest -q tests/unit

integration: install
	$(BIN)/pytest -q tests/integration

## The web app in Debian's Chromium against the real mesh (screenshots in test-artifacts/).
browser: install web
	$(BIN)/pytest -q tests/browser

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## Regenerate gen/python from proto/ (the output is committed).
proto: install
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python scripts/gen_proto.py

## Fail when proto/ does not lint or gen/python is stale.
check-proto: install
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python scripts/gen_proto.py --check

bench: install
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

## The four services' images (mangakai/<service>:dev) from the root Dockerfile, with podman (no
## Docker daemon; installed when missing) in the project's own storage under .images/. The base
## is made from Debian's packages unless BASE_IMAGE names one (e.g. the official Python image);
## an image whose inputs have not changed is not built again. TAG=... tags them otherwise.
.PHONY: images
images: web
	./scripts/build-images.sh

## Refuse a Kubernetes overlay that still holds placeholder values: make deploy-check OVERLAY=prod-tokyo
.PHONY: deploy-check
deploy-check: install
	@test -n "$(OVERLAY)" || { echo "usage: make deploy-check OVERLAY=<one of: $$(ls deploy/k8s/overlays)>"; exit 2; }
	$(BIN)/python deploy/k8s/check.py deploy/k8s/overlays/$(OVERLAY)

clean:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m mangakai_devstack down --purge --dir $(STACK_DIR); fi
	rm -rf $(VENV) $(STACK_DIR) .images out *.egg-info */*.egg-info */*/*.egg-info web/node_modules web/dist web/src/gen
