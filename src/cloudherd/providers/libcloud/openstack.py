"""libcloud's OpenStack driver with its keystone v3 token scoped to a project *id*.

libcloud scopes a v3 token by project name only (``ex_tenant_name``); OpenStack dashboards, ``openrc``
files and Occopus' ``nova`` resources give the project's id (``project_id``).  This driver is libcloud's
nova 2.x driver whose every connection (compute, image, network, volume…) asks keystone for a token scoped
``{"project": {"id": …}}``; everything else is libcloud's.  The libcloud provider uses it when its
settings have ``project_id``.
"""

from __future__ import annotations

from typing import Any

from libcloud.common.openstack_identity import OpenStackIdentity_3_0_Connection
from libcloud.compute.drivers.openstack import OpenStack_2_NodeDriver


class _ProjectIdIdentity(OpenStackIdentity_3_0_Connection):  # type: ignore[misc]
    """Keystone v3 with a password, the token scoped by the project id given as ``tenant_name``."""

    def _get_auth_data(self) -> dict[str, Any]:
        data: dict[str, Any] = super()._get_auth_data()
        if "project" in data["auth"].get("scope", {}):
            data["auth"]["scope"] = {"project": {"id": self.tenant_name}}
        return data


class _ScopedByProjectId:
    """A connection whose identity connection is :class:`_ProjectIdIdentity` (for password auth)."""

    _osa: Any

    def get_auth_class(self) -> Any:
        if not self._osa:
            osa = super().get_auth_class()  # type: ignore[misc]
            if type(osa) is OpenStackIdentity_3_0_Connection:
                osa.__class__ = _ProjectIdIdentity  # same state; only how the scope is written differs
            self._osa = osa
        return self._osa


def _scoped(connection: type) -> type:
    return type(connection.__name__, (_ScopedByProjectId, connection), {})


_CONNECTIONS = {name: _scoped(getattr(OpenStack_2_NodeDriver, name)) for name in dir(OpenStack_2_NodeDriver)
                if name.endswith("connectionCls") and isinstance(getattr(OpenStack_2_NodeDriver, name), type)}

OpenStackByProjectId: type = type("OpenStackByProjectId", (OpenStack_2_NodeDriver,), dict(_CONNECTIONS))
