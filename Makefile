# Two commands on a fresh machine: `make demo` (install + bring the hello fleet up), `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup sshd postgres faults browser demo test lint clean-demo

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

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

# Debian's chromium and chromedriver for the dashboard's browser tests (Selenium drives them; nothing is
# downloaded at test time); best effort here, required under CI=true.
browser:
	@if command -v chromedriver >/dev/null 2>&1 && { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }; then :; \
	elif command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null) \
	  || echo "chromium could not be installed: the dashboard tests are skipped (they fail under CI=true)"; \
	else echo "no chromium: the dashboard tests are skipped"; fi

demo: setup sshd
	$(VENV)/bin/cloudherd up examples/hello/cloudherd.yml

test: setup sshd postgres faults browser
	$(VENV)/bin/ruff check src tests
	$(PY) -m pytest --durations=15

lint: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy
