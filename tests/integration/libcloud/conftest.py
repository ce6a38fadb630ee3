"""The libcloud tests: the libcloud provider: the Dummy driver, and OpenStack against libcloud_wire.

No fixtures of its own yet: a fixture two files here share belongs in this file (those used everywhere:
tests/conftest.py; moto: tests/integration/conftest.py)."""
