"""The engine tests: up / plan / rollout / remote work / gc / chaos on real local nodes.

No fixtures of its own yet: a fixture two files here share belongs in this file (those used everywhere:
tests/conftest.py; moto: tests/integration/conftest.py)."""
