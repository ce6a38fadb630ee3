"""The observability tests: traces, metrics and notifications of real operations.

No fixtures of its own yet (those used everywhere: tests/conftest.py)."""
