# One entry point for people and CI. `make test` and `make demo` set everything up on a fresh machine.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: help venv lint format typecheck template checkov test test-unit test-integration test-e2e demo bench build lock destroy clean

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

template: $(STAMP) checkov ## cfn-lint, sam validate --lint and checkov on template.yaml
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint --template-file template.yaml

# checkov lives in its own virtualenv: its dependencies pin versions the SAM CLI and moto disagree with.
CHECKOV_VERSION := 3.3.30
CHECKOV := .venv-checkov/bin/checkov
$(CHECKOV):
	@python=$$(scripts/find-python.sh); "$$python" -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet --upgrade pip
	.venv-checkov/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)

checkov: $(STAMP) $(CHECKOV) ## checkov on template.yaml; skipped checks and their reasons: template Metadata.Checkov
	skips=$$($(BIN)/python scripts/checkov_skips.py); \
	  $(CHECKOV) --file template.yaml --framework cloudformation --compact --quiet --skip-download --skip-check "$$skips"

test: lint typecheck template ## everything CI runs: lint, types, template checks, all test tiers
	$(BIN)/python -m pytest -n auto --dist worksteal || { rc=$$?; [ $$rc -eq 5 ] && echo "pytest collected no tests (exit 5)"; exit $$rc; }

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

build: $(STAMP) ## sam build: src/Makefile builds each function's zip (hashed lock, no SDK, compiled for the runtime)
	PATH="$$(dirname "$$(scripts/find-python.sh)"):$$PATH" $(BIN)/sam build

RUNTIME_SDK := boto3 botocore s3transfer jmespath python-dateutil six
lock: $(STAMP) ## pin src/requirements.in (with hashes) into src/requirements.txt, checked against src/lambda-runtime.txt
	$(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.13 --python-platform aarch64-manylinux_2_28 \
	  --custom-compile-command "make lock" $(addprefix --no-emit-package ,$(RUNTIME_SDK)) $(LOCK_FLAGS) \
	  --constraint src/lambda-runtime.txt --output-file src/requirements.txt src/requirements.in

destroy: $(STAMP) ## delete a deployed stack: empty its versioned buckets, sam delete, then the retained jobs table
	$(BIN)/python -m scripts.destroy --config-env "$${CONFIG_ENV:-dev}" $(if $(KEEP_JOBS_TABLE),--keep-jobs-table)

clean: ## remove the virtualenv and build output
	rm -rf $(VENV) .venv-checkov .aws-sam .pytest_cache .mypy_cache .ruff_cache
