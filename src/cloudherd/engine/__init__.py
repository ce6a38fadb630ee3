"""The engine: bring infrastructures up, run commands on them, tear them down.  Knows no CLI.

Modules: ``diff`` (the decisions, pure: what to create / destroy / replace, which nodes are behind their release,
their rollout batches, which scripts must run), ``plan`` (the ``Plan`` value built from the spec and the stored
state, read-only; saved plans and their fingerprints), ``converge`` (executes a plan: rows, retire, create,
placement, deploy), ``apply`` (``up`` / ``execute`` of a saved plan / ``submit``: lease, revision, rollback),
``rollout`` (rolling updates through the plan's batches), ``session`` (one run's identity, providers, settling,
connections and host-key pins), ``reach`` (logins and pins), ``reconcile`` / ``manager`` (passes), ``destroy``
(down), ``redeploy`` (scripts again on chosen nodes), ``fleet`` (exec, push, pull), ``liveness`` (refresh),
``locks`` (leases), ``recover`` (leftovers), ``journal`` (cloud calls as intents), ``templates`` (script context),
``deploy`` (scripts on one node), ``context`` (identity, providers, secrets), ``events`` (progress feed).
"""
