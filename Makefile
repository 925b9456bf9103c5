# kvmops.virt: build, test, and the local lab of real KVM hypervisors.
#   make test    install what is missing, then sanity, lint, unit and integration tests
#   make demo    bring up the lab, a few guests on it, and rebalance them on peak load (rulebook)
# Both work on a fresh Debian 12 machine as root.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= $(CURDIR)/.venv
BUILD := $(CURDIR)/.build
LAB_HOSTS ?= 3
export KVMOPS_LAB_DIR ?= $(CURDIR)/.lab
# The tests run ansible against the collection installed from the built tarball.
export KVMOPS_COLLECTIONS_PATH := $(BUILD)/collections

VERSION := $(shell sed -n 's/^version: *//p' galaxy.yml)
TARBALL := $(BUILD)/kvmops-virt-$(VERSION).tar.gz
SANITY_TREE := $(BUILD)/sanity/ansible_collections/kvmops/virt
BIN := $(VENV)/bin
LAB := $(BIN)/python -m lab

.PHONY: help deps venv lock cores build ee-context install docs sanity lint unit integration test demo bench-inventory bench-placement \
        lab-up lab-down lab-status clean

help:
	@echo "make test        install dependencies, run sanity, lint, unit and integration tests"
	@echo "make lint        ruff and ansible-lint (production profile)"
	@echo "make docs        regenerate the reference in docs/reference (antsibull-docs)"
	@echo "make demo        bring up the lab and guests, raise one host's load, watch the rulebook rebalance"
	@echo "make lab-up      start $(LAB_HOSTS) lab hypervisors (LAB_HOSTS=N for more; LAB_TRANSPORT=ssh|tls for the inventory's URIs)"
	@echo "make lab-status  hosts, guests and their CPU use"
	@echo "make lab-down    stop everything the lab started"
	@echo "make lock        refresh the locks in requirements/ from the direct requirements (UPGRADE=1: newest)"
	@echo "make cores       one locked venv per ansible-core the collection claims (.build/cores; tests/unit/test_ansible_cores.py)"
	@echo "make build       build the collection tarball into .build/"
	@echo "make ee-context  build contexts of the execution and decision environments (.build/ee, .build/de)"
	@echo "make bench-inventory  the inventory benchmark (~40 min; BENCH_ARGS=--help for options)"
	@echo "make bench-placement  the planner: PlanetLab trace replay, MILP ratio, speed (~3 min)"
	@echo "make clean       lab down, remove .lab/ .build/ .venv/"

# --- dependencies -----------------------------------------------------------------------
# Every virtualenv is installed from a lock in requirements/ (README there): every package
# pinned, every file's hash checked. pip and setuptools come first from bootstrap.lock;
# libvirt-python is then built with that setuptools (--no-build-isolation), not in a build
# environment pip would fill with unchecked downloads. A changed lock makes a new venv, so
# nothing a lock dropped stays behind.
LOCKS := requirements
PIP_LOCKED := --quiet --require-hashes
LOCK_PYTHON := 3.11
# the ansible-core releases meta/runtime.yml claims (requires_ansible), each tested in a venv of its own
CORES := 2.16 2.17 2.18 2.19
define locked_venv_base
	rm -rf $(1)
	$(PYTHON) -m venv $(1)
	$(1)/bin/pip install $(PIP_LOCKED) --no-deps -r $(LOCKS)/bootstrap.lock
endef

# bindep.txt is the one list of system packages; bindep (locked, the versions of dev.lock)
# says which are missing, so apt runs only when something is.
$(VENV)/.bindep: $(LOCKS)/bootstrap.lock $(LOCKS)/bindep.lock $(LOCKS)/dev.lock
	$(call locked_venv_base,$(VENV))
	$(BIN)/pip install $(PIP_LOCKED) -r $(LOCKS)/bindep.lock
	touch $@

deps: $(VENV)/.bindep
	@missing="$$($(BIN)/bindep -b compile test | tr '\n' ' ' || true)"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages: $$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q; \
	  apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@# the lab downloads its guest kernel with apt: that needs the package lists
	@apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1 || apt-get update -q

$(VENV)/.installed: $(VENV)/.bindep | deps
	$(BIN)/pip install $(PIP_LOCKED) --no-build-isolation -r $(LOCKS)/dev.lock
	touch $@

venv: $(VENV)/.installed

# make lock: every lock again from its direct requirements, keeping the pins that still
# satisfy them; make lock UPGRADE=1 takes the newest versions. uv resolves (in seconds, for
# Python $(LOCK_PYTHON) on Linux whatever runs it) and writes every file's hash; pip installs.
LOCK_TOOLS := $(BUILD)/lock-tools
UV := $(LOCK_TOOLS)/bin/uv
UV_COMPILE = $(UV) pip compile --quiet --generate-hashes --python-version $(LOCK_PYTHON) \
  --python-platform x86_64-unknown-linux-gnu --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade)

$(LOCK_TOOLS)/.installed: $(LOCKS)/bootstrap.lock $(LOCKS)/uv.lock
	$(call locked_venv_base,$(LOCK_TOOLS))
	$(LOCK_TOOLS)/bin/pip install $(PIP_LOCKED) -r $(LOCKS)/uv.lock
	touch $@

lock: $(LOCK_TOOLS)/.installed
	$(UV_COMPILE) $(LOCKS)/bootstrap.in -o $(LOCKS)/bootstrap.lock
	$(UV_COMPILE) $(LOCKS)/uv.in -c $(LOCKS)/bootstrap.lock -o $(LOCKS)/uv.lock
	$(UV_COMPILE) requirements-dev.txt -c $(LOCKS)/bootstrap.lock -o $(LOCKS)/dev.lock
	grep -i '^bindep==' requirements-dev.txt | $(UV_COMPILE) - -c $(LOCKS)/dev.lock -o $(LOCKS)/bindep.lock
	for core in $(CORES); do \
	  $(UV_COMPILE) $(LOCKS)/core-$$core.in -c $(LOCKS)/bootstrap.lock -o $(LOCKS)/core-$$core.lock; \
	done

# One locked venv per ansible-core the collection claims (meta/runtime.yml), built once.
CORE_VENVS := $(CORES:%=$(BUILD)/cores/%/.installed)
$(BUILD)/cores/%/.installed: $(LOCKS)/bootstrap.lock $(LOCKS)/core-%.lock | deps
	$(call locked_venv_base,$(BUILD)/cores/$*)
	$(BUILD)/cores/$*/bin/pip install $(PIP_LOCKED) --no-build-isolation -r $(LOCKS)/core-$*.lock
	touch $@

cores: $(CORE_VENVS)

# --- the collection ---------------------------------------------------------------------
build: venv
	rm -rf $(BUILD)/kvmops-virt-*.tar.gz
	$(BIN)/ansible-galaxy collection build --force --output-path $(BUILD) .
	@# without the version: what the execution and decision environment definitions copy
	cp $(TARBALL) $(BUILD)/kvmops-virt.tar.gz

# The build contexts of the job execution environment and the decision environment, for
# podman/docker build (there is no container engine here to build the images).
ee-context: build
	$(BIN)/ansible-builder create -f execution-environment.yml -c $(BUILD)/ee --output-filename Containerfile
	$(BIN)/ansible-builder create -f extensions/eda/decision-environment.yml -c $(BUILD)/de --output-filename Containerfile

install: build
	rm -rf $(KVMOPS_COLLECTIONS_PATH)
	$(BIN)/ansible-galaxy collection install --offline --force -p $(KVMOPS_COLLECTIONS_PATH) $(TARBALL)

# ansible-test wants the collection at ansible_collections/<namespace>/<name>: copy the
# files git knows (tracked, and new ones it does not ignore) there. It lists files with
# git, so the copy gets an index of its own (else it sees the outer repository).
sanity: venv
	rm -rf $(BUILD)/sanity
	mkdir -p $(SANITY_TREE)
	git ls-files -z --cached --others --exclude-standard | \
	  xargs -0 -I{} cp --parents -P {} $(SANITY_TREE)/
	cd $(SANITY_TREE) && git init -q && git add -A
	$(BIN)/python tests/utils/prepare_ansible_test.py
	@# compile and import run on every target Python found; the rest on the venv's
	pythons=$$(tests/utils/target_pythons.sh $(BUILD)/pythons); \
	cd $(SANITY_TREE) && PATH="$$pythons:$$PATH" $(BIN)/ansible-test sanity --requirements --color no

unit: install cores
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

# The module, plugin and role reference in docs/reference, generated from the code by
# antsibull-docs (tests/unit/test_reference_docs.py fails when it is stale).
docs: install
	rm -rf $(CURDIR)/docs/reference
	mkdir -m 0755 $(CURDIR)/docs/reference
	PATH="$(BIN):$$PATH" ANSIBLE_COLLECTIONS_PATH=$(KVMOPS_COLLECTIONS_PATH) $(BIN)/antsibull-docs collection \
	  --use-current --fail-on-error --squash-hierarchy --output-format simplified-rst \
	  --no-add-antsibull-docs-version --dest-dir $(CURDIR)/docs/reference kvmops.virt

# ruff over all Python (ruff.toml); ansible-lint, production profile (.ansible-lint), over
# the roles, playbooks, rulebooks and environment definitions, with this build installed.
LINTED := roles playbooks extensions/eda/rulebooks execution-environment.yml extensions/eda/decision-environment.yml meta
lint: install
	$(BIN)/ruff check .
	PATH="$(BIN):$$PATH" ANSIBLE_COLLECTIONS_PATH=$(KVMOPS_COLLECTIONS_PATH) $(BIN)/ansible-lint $(LINTED)

# One pytest run for unit and integration tests, so the last line is its summary. The
# integration tests bring the lab up and down themselves (tests/integration/conftest.py).
test: install cores sanity lint
	$(BIN)/pytest --durations=25 tests/unit tests/integration

# --- the lab ----------------------------------------------------------------------------
lab-up: venv
	$(LAB) up --hosts $(LAB_HOSTS)

lab-down: venv
	$(LAB) down

lab-status: venv
	$(LAB) status

demo: install lab-up
	$(BIN)/python -m lab.demo

# --- benchmarks (not part of make test: they need a quiet machine and take long) -------------
bench-inventory: install
	$(BIN)/python tests/benchmarks/inventory_benchmark.py --markdown $(BUILD)/bench/inventory-benchmark.md $(BENCH_ARGS)

bench-placement: venv
	mkdir -p $(BUILD)/bench
	$(BIN)/python tests/benchmarks/placement/trace_benchmark.py --csv $(BUILD)/bench/placement-traces.csv
	$(BIN)/python tests/benchmarks/placement/trace_benchmark.py --memory-model enforced \
	  --csv $(BUILD)/bench/placement-traces-enforced.csv
	$(BIN)/python tests/benchmarks/placement/milp_benchmark.py --hot 3
	$(BIN)/python tests/benchmarks/placement/milp_benchmark.py --hot 5
	$(BIN)/python tests/benchmarks/placement/milp_benchmark.py --hot 7
	$(BIN)/python tests/benchmarks/placement/planner_speed.py

clean:
	-[ -x $(BIN)/python ] && $(LAB) down
	rm -rf $(KVMOPS_LAB_DIR) $(BUILD) $(VENV)
