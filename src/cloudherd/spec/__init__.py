"""The declarative spec: pydantic models and a YAML loader that keeps line numbers."""

from cloudherd.spec.loader import LoadedSpec, Script, load_spec, load_spec_text
from cloudherd.spec.model import Group, Health, Spec, SSHConfig
from cloudherd.spec.yamlsafe import parse_yaml  # the bounded loader, for any other YAML a spec brings (compat/)

__all__ = ["Group", "Health", "LoadedSpec", "SSHConfig", "Script", "Spec", "load_spec", "load_spec_text", "parse_yaml"]
