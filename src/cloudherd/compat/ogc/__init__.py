"""OGC's Python names over cloudherd: ``from cloudherd.compat.ogc import actions, SpecLoader``.

Why a face of its own: code written for OGC 2.x (``from ogc import actions``; ``from ogc.spec import
SpecLoader``) should run with that import line changed and nothing else.  OGC's calls are module functions
over one global state; here they are over one :class:`cloudherd.api.SyncClient` (cloudherd's database and
settings, as the CLI uses them), made on first use.

* :mod:`.spec` — ``SpecLoader.load([files])``: the files merged (OGC's base + override), their layouts;
* :mod:`.actions` — ``launch`` / ``launch_async`` / ``deploy`` / ``deploy_async`` / ``exec`` / ``exec_async`` /
  ``exec_scripts`` / ``exec_scripts_async`` / ``sync`` / ``sync_async`` / ``teardown`` / ``teardown_async``,
  with OGC's arguments and results (a result is ``== True`` when it succeeded and carries ``out``, ``error``,
  ``exit_code``);
* :mod:`.models` and :mod:`.db` — the user record OGC's documentation makes first.
"""

from cloudherd.compat.ogc import actions
from cloudherd.compat.ogc.spec import Layout, SpecLoader

__all__ = ["Layout", "SpecLoader", "actions"]
