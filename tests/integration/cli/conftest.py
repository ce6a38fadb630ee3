"""The cli tests: the command line: its faces, usage errors, warnings, and as a client of a server.

No fixtures of its own yet: a fixture two files here share belongs in this file (those used everywhere:
tests/conftest.py; moto: tests/integration/conftest.py)."""
