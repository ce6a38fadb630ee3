"""The compat tests: OGC, Occopus, Phantom and py-smartdc users' files and clients.

No fixtures of its own yet: a fixture two files here share belongs in this file (those used everywhere:
tests/conftest.py; moto: tests/integration/conftest.py)."""
