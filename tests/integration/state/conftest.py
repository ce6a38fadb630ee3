"""The state tests: the state database (SQLite and a real PostgreSQL), the journal, leases and clocks.

No fixtures of its own yet: a fixture two files here share belongs in this file (those used everywhere:
tests/conftest.py; moto: tests/integration/conftest.py)."""
