"""Provider entries are checked when the spec is loaded: the type, the budget, the retries, each driver's
common keys — errors at the line of the key — and what passes reaches make_provider in its proper type."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import cli

from cloudherd.errors import SpecError
from cloudherd.providers import make_provider
from cloudherd.providers.budget import BudgetedProvider
from cloudherd.providers.local import LocalProvider
from cloudherd.spec import load_spec
from cloudherd.spec.loader import load_spec_text

HEAD = "name: t\nproviders:\n  x:\n"
TAIL = "groups:\n  web: {provider: x}\n"


def spec(tmp_path: Path, entry: str) -> Path:
    path = tmp_path / "cloudherd.yml"
    path.write_text(HEAD + entry + TAIL)
    return path


@pytest.mark.parametrize(("entry", "where"), [
    ("    type: nosuch\n", r":4: providers\.x\.type: unknown provider type 'nosuch' \(known: aws, gce, libcloud"),
    ("    type: aws\n    region: us-east-1\n    retries: 0\n", r":6: providers\.x\.retries: must be ≥ 1"),
    ("    type: aws\n    retries: -3\n", r":5: providers\.x\.retries: must be ≥ 1"),
    ("    type: aws\n    retries: many\n", r":5: providers\.x\.retries: must be an integer"),
    ("    type: gce\n    budget:\n      rate: 0\n", r":6: providers\.x\.budget\.rate: .*greater than 0"),
    ("    type: gce\n    budget:\n      burst: 2\n      inflight: 3\n",
     r":7: providers\.x\.budget\.inflight: unknown key"),
    ("    type: local\n    budget: {in_flight: 0}\n", r":5: providers\.x\.budget\.in_flight: must be ≥ 1"),
    ("    type: local\n    in_flight: 4\n", r":5: providers\.x\.in_flight: belongs under 'budget:'"),
    ("    type: local\n    server: sshd\n", r":5: providers\.x\.server: "),
    ("    type: libcloud\n    key: k\n", r":3: providers\.x\.driver: is required"),
    ("    type: libcloud\n    driver: dummy\n    concurrency: 0\n", r":6: providers\.x\.concurrency: must be ≥ 1"),
    ("    type: gce\n    operation_timeout: soon\n", r":5: providers\.x\.operation_timeout: .*number"),
])
def test_invalid_provider_entries_are_spec_errors_at_their_line(tmp_path: Path, entry: str, where: str) -> None:
    with pytest.raises(SpecError, match=r"cloudherd\.yml" + where):
        load_spec(spec(tmp_path, entry))


def test_validate_and_plan_refuse_an_unknown_type(home: Path, tmp_path: Path) -> None:
    path = spec(tmp_path, "    type: nosuch\n")
    for command in ("validate", "plan"):
        result = cli(command, str(path))
        assert result.returncode == 2, result.stderr
        assert "cloudherd.yml:4: providers.x.type: unknown provider type 'nosuch'" in result.stderr


def test_settings_reach_make_provider_in_their_types(tmp_path: Path) -> None:
    root = tmp_path / "nodes"
    path = spec(tmp_path, f"    type: local\n    root: {root}\n    retries: '2'\n    backoff: 1\n"
                          "    budget: {rate: '2.5', burst: 3}\n")
    config = load_spec(path).spec.providers["x"]
    assert config.model_extra == {"root": str(root), "retries": 2, "backoff": 1.0,
                                  "budget": {"rate": 2.5, "burst": 3}}
    assert config.settings == config.model_extra
    provider = make_provider("x", config.type, config.model_extra or {})
    assert isinstance(provider, BudgetedProvider) and isinstance(provider.inner, LocalProvider)
    assert provider.inner.root == root and provider.inner.settings == {"root": str(root)}
    assert (provider.attempts, provider.backoff, provider.bucket.rate, provider.bucket.burst) == (2, 1.0, 2.5, 3)
    assert provider.slots._value == 16  # type: ignore[attr-defined]  # in_flight's default


def test_a_stored_spec_with_unresolved_variables_still_loads(tmp_path: Path) -> None:
    """``down`` re-reads the stored spec without its environment: ${VAR} stays as written, not an error."""
    text = HEAD + "    type: aws\n    retries: ${RETRIES}\n    region: ${REGION:-eu-west-1}\n" + TAIL
    loaded = load_spec_text(text, tmp_path / "s.yml", environ={}, strict_env=False, read_scripts=False)
    assert loaded.spec.providers["x"].model_extra == {"retries": "${RETRIES}", "region": "eu-west-1"}
    with pytest.raises(SpecError, match=r"s\.yml:5: providers\.x\.retries"):
        load_spec_text(text, tmp_path / "s.yml", environ={"RETRIES": "0"}, read_scripts=False)


def test_a_snapshot_from_a_laxer_version_is_migrated_not_refused(tmp_path: Path) -> None:
    """Infrastructures made before these checks keep working for ``down``: their stored provider entries
    are re-read leniently (the budget's keys moved, retries: 0 as 1, what is still invalid dropped)."""
    old = HEAD + "    type: aws\n    rate: 5\n    in_flight: 2\n    retries: 0\n    backoff: soon\n" + \
        "    region: us-east-1\n" + TAIL
    with pytest.raises(SpecError):  # as a spec being loaded now: refused
        load_spec_text(old, tmp_path / "s.yml", environ={}, read_scripts=False)
    loaded = load_spec_text(old, tmp_path / "s.yml", environ={}, strict_env=False, read_scripts=False)
    config = loaded.spec.providers["x"]
    assert config.model_extra == {"budget": {"rate": 5.0, "in_flight": 2}, "retries": 1, "region": "us-east-1"}
    provider = make_provider("x", config.type, config.settings)
    assert isinstance(provider, BudgetedProvider) and provider.attempts == 1 and provider.bucket.rate == 5.0
