# One entry point for people and CI. `make test` and `make demo` set everything up on a fresh machine.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: help venv lint format typecheck template test test-unit test-integration test-e2e demo bench build clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): pyproject.toml
	@python=$$(scripts/find-python.sh); echo "creating $(VENV) with $$python"; \
	  [ -x $(BIN)/python ] || "$$python" -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,test,dev]'
	@touch $(STAMP)

venv: $(STAMP) ## create the virtualenv with every extra (Lambda deps, local stack, tests, linters, SAM CLI)

format: $(STAMP) ## format the code
	$(BIN)/ruff format src local tests bench scripts
	$(BIN)/ruff check --fix src local tests bench scripts

lint: $(STAMP) ## ruff (lint + format check)
	$(BIN)/ruff check src local tests bench scripts
	$(BIN)/ruff format --check src local tests bench scripts

typecheck: $(STAMP) ## mypy --strict on the Lambda package and the local stack
	$(BIN)/mypy

template: $(STAMP) ## cfn-lint and sam validate --lint on template.yaml
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint --template-file template.yaml

test: lint typecheck template ## everything CI runs: lint, types, template checks, all test tiers
	$(BIN)/python -m pytest || { rc=$$?; [ $$rc -eq 5 ] && echo "pytest collected no tests (exit 5)"; exit $$rc; }

test-unit: $(STAMP) ## unit tier only
	$(BIN)/python -m pytest tests/unit

test-integration: $(STAMP) ## integration tier only (moto)
	$(BIN)/python -m pytest tests/integration

test-e2e: $(STAMP) ## e2e tier only (local stack, real audio)
	$(BIN)/python -m pytest tests/e2e

demo: $(STAMP) ## run the whole pipeline offline on the bundled sample
	$(BIN)/denoise-local demo

bench: $(STAMP) ## run the benchmarks, write bench/results.md
	$(BIN)/python -m bench

build: $(STAMP) ## sam build (needs the runtime's Python on PATH)
	PATH="$$(dirname "$$(scripts/find-python.sh)"):$$PATH" $(BIN)/sam build

clean: ## remove the virtualenv and build output
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
