# Make targets are the interface: setup (idempotent), run, test, bench.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
AGW := $(VENV)/bin/agw
APT_PACKAGES := netconfd libyuma-base openssh-server frr snmpd snmp iproute2 nftables iptables chromium fonts-dejavu-core \
	iputils-ping procps psmisc libnetfilter-queue-dev gcc python3-venv python3-dev postgresql nats-server

.PHONY: setup apt netconfd-sil venv run test typecheck fuzz bench lab-up lab-down proto pki clean

setup: apt netconfd-sil venv

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

# netconfd's ietf-interfaces SIL (interfaces-state of a lab node's namespace, for nodes with
# `oper-state: true`), unpacked beside the system, NOT installed: installed, every netconfd on the
# machine would load it (shared/lab-notes.md 1.6). lab/daemons.py loads it with --runpath.
NETCONFD_SIL_DIR ?= /usr/local/lib/agw-lab/netconfd-ietf-interfaces
netconfd-sil:
	@[ -f $(NETCONFD_SIL_DIR)/lib/libietf-interfaces.so ] || { \
		set -e; tmp=$$(mktemp -d); chmod 755 $$tmp; \
		(cd $$tmp && apt-get download -q netconfd-module-ietf-interfaces 2>/dev/null || \
			{ apt-get update -q && apt-get download -q netconfd-module-ietf-interfaces; }); \
		dpkg -x $$tmp/netconfd-module-ietf-interfaces_*.deb $$tmp/x; \
		mkdir -p $(NETCONFD_SIL_DIR)/lib $(NETCONFD_SIL_DIR)/modules; \
		cp $$tmp/x/usr/lib/*/yuma/libietf-interfaces.so.0.0.0 $(NETCONFD_SIL_DIR)/lib/libietf-interfaces.so; \
		cp $$tmp/x/usr/share/yuma/modules/examples/interfaces-notifications.yang $(NETCONFD_SIL_DIR)/modules/; \
		chmod -R a+rX $(NETCONFD_SIL_DIR); rm -rf $$tmp; echo "unpacked the netconfd ietf-interfaces SIL in $(NETCONFD_SIL_DIR)"; }

venv:
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[all,dev,bench]'
	@$(PY) -m pip install -q -e examples/driver-plugin

LAB_TOPOLOGY ?= lab/topologies/basic.clab.yml
DATA_DIR ?= var

run: setup
	$(AGW) lab up $(LAB_TOPOLOGY)
	@mkdir -p -m 700 $(DATA_DIR)
	DATA_DIR=$(DATA_DIR) bash scripts/start-nats.sh
	$(AGW) lab inventory --lab basic > $(DATA_DIR)/inventory.yaml
	$(AGW) serve --data-dir $(DATA_DIR) --inventory $(DATA_DIR)/inventory.yaml

# A development PKI (CA, server certificate for localhost/127.0.0.1, client certificates admin,
# orchestrator, operator, reader) for TLS and mutual TLS: see the README.
pki: setup
	$(AGW) pki dev --dir $(DATA_DIR)/pki

lab-up: setup
	$(AGW) lab up $(LAB_TOPOLOGY)

lab-down:
	$(AGW) lab down basic

# mypy --strict on gateway/, drivers/ and the example driver plugin ([tool.mypy] in pyproject.toml;
# mypy and the stub packages are pinned in the dev extra).
typecheck: setup
	$(VENV)/bin/mypy

# The whole suite: the type check, then unit tests, integration tests against the lab (the pytest
# plugin brings its own lab up and down), against a real PostgreSQL and real NATS servers (the NATS
# tests start their own nats-server; scripts/start-nats.sh starts the one `make run` uses).
test: setup
	$(VENV)/bin/mypy
	bash scripts/start-postgres.sh
	DATA_DIR=$(DATA_DIR) bash scripts/start-nats.sh
	AGW_REQUIRE_POSTGRES=1 AGW_REQUIRE_NATS=1 $(VENV)/bin/pytest -q -p no:cacheprovider

# The API fuzzer (tests/fuzz; `make test` runs it short): hostile requests against every RPC of a
# real in-process gateway, FUZZ_EXAMPLES of them (docs/fuzzing.md). No lab, nothing leaves loopback.
FUZZ_EXAMPLES ?= 5000
fuzz: setup
	AGW_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) AGW_FUZZ_RSS_BOUND_MB=512 $(VENV)/bin/pytest -q -s -p no:cacheprovider tests/fuzz

# Every benchmark prints its figures beside a baseline measured in the same run, as a ratio.
bench: setup
	$(AGW) lab up $(LAB_TOPOLOGY)
	$(PY) -m bench

# Regenerate gateway/api/generated/ from proto/ (grpc_tools.protoc; the generated code is committed).
proto:
	$(PY) proto/generate.py

clean:
	rm -rf $(VENV) build *.egg-info
