"""The gce tests: the gce provider against a Compute API fake on 127.0.0.1 (gce_wire).

No fixtures of its own yet: a fixture two files here share belongs in this file (those used everywhere:
tests/conftest.py; moto: tests/integration/conftest.py)."""
