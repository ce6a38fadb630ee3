"""Pydantic models of a spec (v1).

Models forbid unknown keys so that a typo (``cont: 3``) is an error with a line number, not a
silently ignored setting.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"
BUILTIN_PROVIDER_TYPES = ("local", "aws")  # usable by type name without a `providers:` entry


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SSHConfig(_Strict):
    """How cloudherd logs in to nodes; ``key`` is generated on first use when it does not exist."""

    user: str | None = None
    key: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)


class ProviderConfig(BaseModel):
    """A named provider: its ``type`` and the driver's own settings (region, zone, credentials…)."""

    model_config = ConfigDict(extra="allow")

    type: str


class Group(_Strict):
    """One node group (layout): N alike nodes made by one provider and set up by the same scripts."""

    provider: str = "local"
    image: str | None = None
    size: str | None = None
    count: int = Field(default=1, ge=0, le=10000)
    tags: dict[str, str] = Field(default_factory=dict)
    scripts: list[str] = Field(default_factory=list)
    teardown: str | None = None
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("scripts", mode="before")
    @classmethod
    def _one_script_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("tags", "env", mode="before")
    @classmethod
    def _scalars_as_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: str(v) if isinstance(v, int | float | bool) else v for k, v in value.items()}
        return value


class Spec(_Strict):
    """A whole infrastructure: its name, how to reach nodes, variables and node groups."""

    name: str = Field(pattern=NAME_PATTERN)
    ssh: SSHConfig = Field(default_factory=SSHConfig)
    variables: dict[str, Any] = Field(default_factory=dict)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    groups: dict[str, Group] = Field(min_length=1)

    @model_validator(mode="after")
    def _providers_exist(self) -> Spec:
        for group_name, group in self.groups.items():
            if group.provider not in self.providers and group.provider not in BUILTIN_PROVIDER_TYPES:
                known = sorted({*self.providers, *BUILTIN_PROVIDER_TYPES})
                raise _LocatedValueError(
                    ("groups", group_name, "provider"),
                    f"unknown provider '{group.provider}' (known: {', '.join(known)})",
                )
        return self


class _LocatedValueError(ValueError):
    """A cross-field error that knows which key it is about, so the loader can point at its line."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message
