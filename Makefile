# ironserve: 'make demo' boots the lab and provisions it; 'make test' runs every check.
# Both install what they need (Debian packages with apt, Python packages into .venv).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := qemu-system-x86 qemu-utils mmdebstrap apt-utils gnupg iproute2 openssh-client e2fsprogs \
	debian-archive-keyring ca-certificates python3-venv systemd-container nftables curl shellcheck
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Longest first: the bench runner starts them in this order, two at a time where cores and memory allow; the light
# scenarios (light, frontend, monitoring, dr) run beside the QEMU ones.
SCENARIOS ?= network light gpu-stack inference storage inference-nodes probe frontend monitoring dr
BENCH_JOBS ?= 2
BENCH_STRATEGY ?= mitogen
# QEMU machines per core, of the scenarios running side by side: a TCG guest keeps about one core busy whatever its
# vCPUs, so on 2 cores two one-machine scenarios (gpu-stack, inference, storage) run together and the two-machine
# ones (network, inference-nodes, probe) with light machines only (docs/bench.md).
BENCH_MACHINES_PER_CORE ?= 1
# Outside the suite: the NVIDIA DKMS build under TCG, 30 minutes alone and over an hour beside another QEMU scenario.
SLOW_SCENARIOS := gpu-dkms

.PHONY: help setup apt-deps lint unit molecule golden-image test test-slow bench demo demo-again demo-down clean

help:
	@echo "make demo       boot the lab (two QEMU GPU-server stand-ins), provision it with site.yml, serve through the front door"
	@echo "make demo-again site.yml again on the demo lab: fails where any task changes anything (changed=0 expected)"
	@echo "make demo-down  stop the demo lab and remove everything it created"
	@echo "make test       lint, unit tests, the Molecule scenarios on the lab ($(SCENARIOS)) and a golden image"
	@echo "make test-slow  the scenarios too slow for every run ($(SLOW_SCENARIOS))"
	@echo "make bench      benchmarks of the product: tables in artifacts/bench/, recorded in docs/benchmarks.md (not in make test)"

apt-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${db:Status-Status}\n' $$p 2>/dev/null \
	  | grep -qx installed || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(BIN)/.installed: requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	# Two package roots (ironserve/ and module_utils/ironserve_target/) make setuptools install the editable package
	# through an import finder, which it announces as a warning on every install: nothing to act on.
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/pip install -q --no-deps -e .
	touch $@

setup: apt-deps $(BIN)/.installed

lint: setup
	$(BIN)/yamllint -s .
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/ansible-lint
	$(BIN)/ansible-playbook --syntax-check -i inventories/example site.yml
	$(BIN)/ansible-playbook --syntax-check -i inventories/lab site.yml

# One worker per core (pytest-xdist): the unit tests are CPU-bound and independent (215 s one by one here, 112-128 s
# on two workers).
unit: setup
	$(BIN)/pytest -n auto tests

molecule: setup
	$(BIN)/python tests/bench/run_scenarios.py --jobs $(BENCH_JOBS) --strategy $(BENCH_STRATEGY) \
		--machines-per-core $(BENCH_MACHINES_PER_CORE) $(SCENARIOS)

# The suite's one golden image: built from the lab's base image and bundle, checked, booted on its own.
golden-image: setup
	@start=$$SECONDS; rm -rf artifacts/golden-image \
	  && $(BIN)/ironserve image build --stages base --output artifacts/golden-image \
	  && IRONSERVE_GOLDEN_IMAGE=artifacts/golden-image $(BIN)/pytest -q tests/bench/golden_image_check.py \
	  && echo "golden-image: $$((SECONDS - start)) s"

# The bench's base image and bundle (downloads from Debian's archive) build beside lint and the unit tests (CPU), in
# their own process group so that a failed lint or unit test stops them too; their log: artifacts/bench/caches.log.
# A dry run (make -n) still runs a line naming $(MAKE): it then only shows the steps, building nothing.
test: setup
	@case '$(firstword -$(MAKEFLAGS))' in *n*) exec $(MAKE) --no-print-directory lint unit;; esac; \
	mkdir -p artifacts/bench; \
	setsid $(BIN)/python tests/bench/build_caches.py > artifacts/bench/caches.log 2>&1 & caches=$$!; \
	trap 'kill -TERM -- -$$caches 2>/dev/null || kill -TERM $$caches 2>/dev/null || true' EXIT; \
	$(MAKE) --no-print-directory lint unit; \
	if ! wait $$caches; then echo "the bench's base image or bundle failed:"; tail -40 artifacts/bench/caches.log; exit 1; fi; \
	cat artifacts/bench/caches.log
	$(MAKE) --no-print-directory molecule golden-image

# Each benchmark prints ratios measured side by side in one run; docs/benchmarks.md says what each measured.
bench: setup
	$(BIN)/python tests/bench/controller_cost.py --hosts 1,10,50 --strategy linear --out artifacts/bench/controller-linear.md
	$(BIN)/python tests/bench/controller_cost.py --hosts 1,10,50 --strategy mitogen --out artifacts/bench/controller-mitogen.md
	$(BIN)/python tests/bench/site_floor.py --out artifacts/bench/site-floor.md
	cat artifacts/bench/controller-linear.md artifacts/bench/controller-mitogen.md artifacts/bench/site-floor.md

test-slow: setup
	$(MAKE) molecule SCENARIOS="$(SLOW_SCENARIOS)"

# The demo runs over the bench's connection strategy (BENCH_STRATEGY=linear: plain SSH, as a site runs by default).
demo: setup
	$(BIN)/ironserve lab up
	$(BIN)/python tests/bench/demo_serving.py stage
	$(BIN)/python tests/bench/with_strategy.py $(BENCH_STRATEGY) $(BIN)/ironserve run --inventory inventories/lab
	$(BIN)/ironserve lab status demo
	$(BIN)/ironserve report
	$(BIN)/python tests/bench/run_profile.py
	$(BIN)/python tests/bench/demo_serving.py show

# The demo's second run: site.yml again on the converged lab, failing (exit 5, each host and task named) where any
# task of any stage changes something.
demo-again: setup
	$(BIN)/python tests/bench/with_strategy.py $(BENCH_STRATEGY) $(BIN)/ironserve run --inventory inventories/lab \
	  --expect-no-change --plain

demo-down: setup
	$(BIN)/ironserve lab down demo
	$(BIN)/ironserve lab leftovers demo

clean:
	-$(BIN)/ironserve lab down --all
	rm -rf $(VENV) .cache
