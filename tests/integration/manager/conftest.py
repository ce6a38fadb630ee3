"""The manager tests: the manager that keeps fleets alive, its breaker, faults and HA.

No fixtures of its own yet: a fixture two files here share belongs in this file (those used everywhere:
tests/conftest.py; moto: tests/integration/conftest.py)."""
