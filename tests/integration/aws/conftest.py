"""The aws tests: moto's EC2 over real HTTP on 127.0.0.1 (boto3 itself is not mocked).

No fixtures of its own yet: a fixture two files here share belongs in this file (those used everywhere:
tests/conftest.py; moto: tests/integration/conftest.py)."""
