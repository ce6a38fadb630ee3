# Two commands on a fresh machine: `make demo` (install + bring the hello fleet up), `make test`.
#
# Installs come from uv.lock: every dependency at the exact version (and hash) the last green run tested,
# so a library released since cannot break a fresh machine.  `make lock` moves the lock to the newest
# versions pyproject.toml allows; `make test-latest` tries those first, in a throw-away venv.
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# uv itself is pinned and kept beside the project (.tools), not in the venv that `uv sync` keeps exact.
# --compile-bytecode: pip compiles at install, uv does not; where PYTHONDONTWRITEBYTECODE is set (this
# machine) every import would compile from source again, and the suite took twice as long.
UV_VERSION := 0.13.9
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := python3
# pytest's arguments for `make test-stress` (a file, a -k expression…); the whole suite by default
TESTS ?=

.PHONY: setup sshd sandbox postgres faults browser prometheus demo test test-latest test-stress lock lint clean-demo

setup: $(VENV)/.installed

$(UV):
	python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --target .tools uv==$(UV_VERSION)

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync -q --locked --extra dev --compile-bytecode
	touch $@

# Refresh the lock to the newest versions pyproject.toml allows (then run `make test` and commit uv.lock).
lock: | $(UV)
	$(UV) lock --upgrade

# The newest versions the registries serve today, in a throw-away venv, against the suite without its slow
# scenario tests: drift found before it reaches a user.  Fix the code (or bound the dependency, naming the
# upstream issue), then `make lock`.
test-latest: sshd sandbox postgres faults browser prometheus | $(UV)
	UV=$(UV) bash .ci/test-latest

# The suite (or TESTS="tests/unit/test_x.py -k y") with every core busy beside it: a test that passes only on an
# idle machine has a race, and this is where it shows.
test-stress: setup sshd sandbox postgres faults browser prometheus
	@hogs=""; for i in $$(seq $$(nproc)); do yes >/dev/null & hogs="$$hogs $$!"; done; \
	trap 'kill $$hogs' EXIT; echo "CPU hogs beside the tests: pids$$hogs"; \
	$(PY) -m pytest $(TESTS)

# Best effort: OpenSSH's sshd makes local nodes faster and more real; without it cloudherd uses its
# built-in SSH server, so nothing here is required.
sshd:
	@if command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq openssh-server openssh-client >/dev/null) \
	  || echo "openssh-server could not be installed: local nodes use cloudherd's built-in SSH server"; \
	else echo "no sshd: local nodes use cloudherd's built-in SSH server"; fi

# PostgreSQL's binaries for the state tests on PostgreSQL (they start their own server in a temp folder);
# best effort here, required under CI=true (the tests fail without them there).
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql >/dev/null) \
	  || echo "postgresql could not be installed: the PostgreSQL tests are skipped (they fail under CI=true)"; \
	else echo "no PostgreSQL: the PostgreSQL tests are skipped"; fi

# nftables' nft for `cloudherd local fault NODE partition` (a drop rule on the node's loopback address);
# best effort here, required under CI=true (the partition tests fail without it there).  Sandboxed nodes
# themselves need only util-linux's unshare, always installed.
faults:
	@if command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nftables >/dev/null) \
	  || echo "nftables could not be installed: the partition tests are skipped (they fail under CI=true)"; \
	else echo "no nftables: the partition tests are skipped"; fi

# fuse-overlayfs, slirp4netns and uidmap: local nodes sandboxed for a user who is not root (as root,
# util-linux and the kernel's overlay suffice; uidmap's newuidmap lets such nodes run OpenSSH).  Best effort here (without them a normal user's nodes run unisolated, and
# `up` says which package is missing); required under CI=true (the rootless tests fail without them).
sandbox:
	@if command -v fuse-overlayfs >/dev/null 2>&1 && command -v slirp4netns >/dev/null 2>&1 && command -v newuidmap >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq fuse-overlayfs slirp4netns uidmap >/dev/null) \
	  || echo "fuse-overlayfs and slirp4netns could not be installed: a normal user's local nodes are not isolated"; \
	else echo "no fuse-overlayfs or slirp4netns (apt-get install fuse-overlayfs slirp4netns): a normal user's local nodes are not isolated"; fi

# Debian's chromium and chromedriver for the dashboard's browser tests (Selenium drives them; nothing is
# downloaded at test time); best effort here, required under CI=true.
browser:
	@if command -v chromedriver >/dev/null 2>&1 && { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }; then :; \
	elif command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null) \
	  || echo "chromium could not be installed: the dashboard tests are skipped (they fail under CI=true)"; \
	else echo "no chromium: the dashboard tests are skipped"; fi

# Debian's prometheus, the real scraper the metrics tests point at `serve`; best effort here, required under
# CI=true (the tests fail without it there).
prometheus:
	@if command -v prometheus >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
	  || echo "prometheus could not be installed: the scrape tests are skipped (they fail under CI=true)"; \
	else echo "no prometheus: the scrape tests are skipped"; fi

demo: setup sshd sandbox
	$(VENV)/bin/cloudherd up examples/hello/cloudherd.yml

test: setup sshd sandbox postgres faults browser prometheus
	$(VENV)/bin/ruff check src tests
	$(PY) -m pytest --durations=15

# ruff, mypy, and the layering as import contracts (pyproject's [tool.importlinter]: the layers point down
# only, and no import cycle between packages or inside one).  CI runs it before the tests.
lint: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
