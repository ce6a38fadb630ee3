"""Unit tests: no node, no server process, no cloud emulator, no database server (in-memory SQLite and
in-process ASGI clients are fine).  They use the fixtures of tests/conftest.py (``memory_store``, ``home``)."""
