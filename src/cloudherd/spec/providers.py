"""What a ``providers:`` entry may say: the known driver types and their checked settings.

The spec is the bottom layer: it knows the driver *types* and the settings cloudherd itself gives meaning
to (the rate budget and retries, and each driver's common keys), but imports no driver.  A model per type
checks those keys at load time, so ``retries: 0`` or ``type: nosuch`` is ``spec.yml:LINE: path: message``
instead of a failure in the middle of ``up``.  Other keys are refused for ``local``, ``aws`` and ``gce``
(nothing reads them); libcloud's go to its driver, and with a ``reach`` plugin, to the plugin.
``make_provider`` checks settings given from code the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from cloudherd.spec.durations import parse_duration
from cloudherd.spec.interpolate import EnvText

PROVIDER_TYPES = ("aws", "gce", "libcloud", "local")

# keys that are the rate budget's and the retry layer's, never the driver's
BUDGET_DEFAULTS: dict[str, Any] = {"rate": 20.0, "burst": 40, "in_flight": 16}
RETRY_DEFAULTS: dict[str, Any] = {"retries": 4, "backoff": 0.5, "backoff_max": 20.0}
# (and ``settle_window``, which the journal reads from the driver's ``listing_lag``)
WRAPPER_KEYS = ("budget", "retries", "backoff", "backoff_max", "reach", "settle_window")


class SettingsError(ValueError):
    """Provider settings given from code are invalid (the spec loader reports its own, with lines)."""


class Budget(BaseModel):
    """``budget: {rate, burst, in_flight}``: calls per second, calls saved up for a burst, calls at once."""

    model_config = ConfigDict(extra="forbid")

    rate: float = Field(default=BUDGET_DEFAULTS["rate"], gt=0)
    burst: int = Field(default=BUDGET_DEFAULTS["burst"], ge=1)
    in_flight: int = Field(default=BUDGET_DEFAULTS["in_flight"], ge=1)


def _seconds(value: Any) -> float | None:
    """A duration (``60``, ``"1m"``, ``"500ms"``; text without a unit only from ``${VAR}``), or None."""
    return None if value is None else parse_duration(value, bare_text=isinstance(value, EnvText))


class Common(BaseModel):
    """The keys every provider entry may have; the driver's own keys are let through."""

    model_config = ConfigDict(extra="allow")

    type: str = "local"
    budget: Budget | None = None
    retries: int | None = Field(default=None, ge=1)  # attempts in all: 1 = no retry
    backoff: float | None = Field(default=None, ge=0)
    backoff_max: float | None = Field(default=None, ge=0)
    reach: str | None = Field(default=None, pattern=r"^[\w.]+:[\w.]+$")
    # how long after a create an empty listing by its tag is not yet believed (the provider's own lag
    # otherwise: 60 s for clouds, 0 for local)
    settle_window: Annotated[float | None, BeforeValidator(_seconds)] = None
    # the budget's keys, once top-level: an error that says where they went
    rate: Any = None
    burst: Any = None
    in_flight: Any = None

    @field_validator("rate", "burst", "in_flight")
    @classmethod
    def _moved_under_budget(cls, value: Any, info: ValidationInfo) -> Any:
        raise ValueError(f"belongs under 'budget:' now (budget: {{{info.field_name}: {value}}})")


class LocalSettings(Common):
    root: str | None = None
    server: Literal["auto", "openssh", "builtin"] | None = None
    # a sandbox per node (namespaces, copy-on-write root): where possible, always, or never
    isolation: Literal["auto", "required", "none"] | None = None
    shared: list[str] | None = None  # host folders every node sees: "HOST" or "HOST:NODE_PATH"


class AwsSettings(Common):
    region: str | None = None
    endpoint_url: str | None = None
    pricing_endpoint_url: str | None = None  # the Price List API's (``catalog refresh``), else boto3's own
    image: str | None = None
    vpc: str | None = None
    subnet: str | None = None
    subnet_id: str | None = None
    allow_from: str | list[str] | None = None
    security_group_ids: list[str] | None = None
    manage_security_group: bool | None = None
    security_group_cleanup_wait: float | None = Field(default=None, ge=0)
    cloud_init: bool | None = None
    key_name: str | None = None
    access_key_id_env: str | None = None  # environment variables holding the keys (an Occopus auth-data file's)
    secret_access_key_env: str | None = None
    architecture: Literal["x86_64", "arm64"] | None = None
    vpc_id: str | None = None


class GceSettings(Common):
    project: str | None = None
    zone: str | None = None
    region: str | None = None
    endpoint: str | None = None
    pricing_endpoint: str | None = None  # the Cloud Billing Catalog API's (``catalog refresh``)
    pricing_api_key_env: str | None = None  # an environment variable holding an API key for it
    image: str | None = None
    size: str | None = None
    firewall: bool | None = None
    external_ip: bool | None = None
    source_ranges: list[str] | None = None
    disk_size_gb: int | None = Field(default=None, ge=1)
    operation_timeout: float | None = Field(default=None, gt=0)
    request_timeout: float | None = Field(default=None, gt=0)
    poll_interval: float | None = Field(default=None, gt=0)
    credentials: Any = None  # a credentials JSON file, or (from code) a google.auth credentials object
    anonymous: bool | None = None
    disk_type: str | None = None
    network: str | None = None
    subnetwork: str | None = None


class LibcloudSettings(Common):
    driver: str
    tagging: Literal["auto", "metadata", "tags", "name"] | None = None
    concurrency: int | None = Field(default=None, ge=1)
    pool: int | None = Field(default=None, ge=1)
    bulk: bool | None = None
    cloud_init: bool | None = None
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    create_options: dict[str, Any] | None = None


MODELS: dict[str, type[Common]] = {"local": LocalSettings, "aws": AwsSettings, "gce": GceSettings,
                                   "libcloud": LibcloudSettings}


def _strict(model: type[Common]) -> type[Common]:
    return type(f"Strict{model.__name__}", (model,), {"model_config": ConfigDict(extra="forbid")})


# drivers that read no setting of their own beyond their model's: an unknown key there is a mistake (a
# typo, another tool's key) and is refused, never carried unread; libcloud's go to its driver, and a reach
# plugin's to the plugin
STRICT: dict[str, type[Common]] = {name: _strict(MODELS[name]) for name in ("local", "aws", "gce")}


def unknown_type(type_: str) -> str:
    return f"unknown provider type '{type_}' (known: {', '.join(PROVIDER_TYPES)})"


def validate(type_: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings checked against the model of ``type_``, checked values in their proper types (a
    pydantic ValidationError locates what is wrong).  Values still holding ``${VAR}`` (a stored spec
    re-read without its environment) are left as they are."""
    model = STRICT[type_] if type_ in STRICT and not settings.get("reach") else MODELS[type_]
    unresolved = {k: v for k, v in settings.items() if isinstance(v, str) and "${" in v}
    checked = model.model_validate({k: v for k, v in settings.items() if k not in unresolved} | {"type": type_})
    out = {k: v for k, v in settings.items() if k != "type"}
    for key in checked.model_fields_set - {"type"}:
        value = getattr(checked, key)
        out[key] = value.model_dump(exclude_unset=True) if isinstance(value, BaseModel) else value
    out.update(unresolved)
    return out


def migrate(type_: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings a laxer version stored, made valid for this one (a stored snapshot must still load, so that
    ``down`` works): the budget's top-level keys go under ``budget``, ``retries`` below 1 (once "no retry")
    is 1, and what still does not pass is dropped (the driver's default applies)."""
    out = dict(settings)
    moved = {k: out.pop(k) for k in BUDGET_DEFAULTS if k in out}
    if moved:
        out["budget"] = {**moved, **(out["budget"] if isinstance(out.get("budget"), Mapping) else {})}
    if isinstance(out.get("retries"), int | float) and not isinstance(out["retries"], bool) and out["retries"] < 1:
        out["retries"] = 1
    for _ in range(len(out) + 1):
        try:
            return validate(type_, out)
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
            if not bad & set(out):
                raise
            for key in bad:
                out.pop(key, None)
    return validate(type_, out)


def check(type_: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`validate` for settings given from code: the first problem as a :class:`SettingsError`."""
    if type_ not in MODELS:
        raise SettingsError(unknown_type(type_))
    try:
        return validate(type_, settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise SettingsError(f"{where}: {first['msg']}") from None


def budget_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The rate budget's and the retry layer's settings of a provider entry, defaults filled in."""
    try:
        budget = Budget.model_validate(settings.get("budget") or {})
        common = Common.model_validate({k: settings[k] for k in ("retries", "backoff", "backoff_max")
                                        if settings.get(k) is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SettingsError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    retries = {k: getattr(common, k) if getattr(common, k) is not None else v for k, v in RETRY_DEFAULTS.items()}
    return {**budget.model_dump(), **retries}
