# Make targets are the interface: setup (idempotent), run, test, bench.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
AGW := $(VENV)/bin/agw
APT_PACKAGES := netconfd libyuma-base openssh-server frr snmpd snmp iproute2 nftables iptables \
	iputils-ping procps psmisc libnetfilter-queue-dev gcc python3-venv python3-dev postgresql

.PHONY: setup apt venv run test bench lab-up lab-down proto clean

setup: apt venv

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv:
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[all,dev]'

test: setup
	$(VENV)/bin/pytest -q

bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info
