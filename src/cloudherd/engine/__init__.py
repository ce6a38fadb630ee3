"""The engine: bring infrastructures up, run commands on them, tear them down.  Knows no CLI.

Modules: ``apply`` (up and rollback), ``destroy`` (down), ``fleet`` (exec, push, pull), ``liveness``
(refresh), ``locks`` (leases), ``recover`` (leftovers), ``templates`` (script context), ``deploy``
(scripts on one node), ``context`` (identity, providers, secrets), ``events`` (progress feed).
"""
