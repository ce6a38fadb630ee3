"""Scripts are templates written by users (and, behind `serve`, by anyone holding a token): a template reaches
the context it is given and nothing else.  The payloads are the public Jinja sandbox escapes; each must be a
template error, located, on every face, and none may run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import cli
from server_harness import Served, serving

from cloudherd.errors import DeployError
from cloudherd.remote.scripts import render

# each one, unsandboxed, runs `touch MARK` (or reads the server's secrets) on the machine that renders it
ESCAPES = {
    "cycler_globals": "{{ cycler.__init__.__globals__.os.system('touch MARK') }}",
    "joiner_globals": "{{ joiner.__init__.__globals__.os.system('touch MARK') }}",
    "namespace_globals": "{{ namespace.__init__.__globals__.os.system('touch MARK') }}",
    "lipsum_globals": "{{ lipsum.__globals__['os'].popen('touch MARK').read() }}",
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "template_reference": "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.system('touch MARK') }}",
    "attr_filter": "{{ cycler|attr('__init__')|attr('__globals__') }}",
    "format_string": "{{ '{0.__class__.__mro__}'.format(cycler) }}",
    "mutation": "{% set seen = [] %}{{ seen.append(1) }}{{ node.__dict__ }}",
}


def _mark(folder: Path) -> Path:
    return folder / "escaped"


def _payload(name: str, mark: Path) -> str:
    return "echo hi\n" + ESCAPES[name].replace("MARK", str(mark)) + "\n"


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_an_escape_is_a_template_error(name: str, tmp_path: Path) -> None:
    mark = _mark(tmp_path)
    context = {"node": {"name": "n-1"}, "nodes": {}, "env": {}, "variables": {}}
    with pytest.raises(DeployError, match=r"^s\.sh:2: template error: "):
        render("s.sh", _payload(name, mark), context)
    assert not mark.exists()


def test_ordinary_templates_still_work() -> None:
    text = "{% for n in nodes.web %}{{ n.name|upper }} {% endfor %}{{ variables.get('port', 80) }} {{ '%03d' % 7 }}"
    context = {"nodes": {"web": [{"name": "a"}, {"name": "b"}]}, "variables": {}}
    assert render("s.sh", text, context) == "A B 80 007"


def _spec(folder: Path, name: str, mark: Path) -> Path:
    script = folder / "escape.sh"
    script.write_text(_payload(name, mark))
    spec = folder / "cloudherd.yml"
    spec.write_text("name: sandboxed\ngroups:\n  web:\n    scripts: [escape.sh]\n")
    return spec


@pytest.mark.usefixtures("home")
@pytest.mark.parametrize("command", ["validate", "plan"])
def test_the_cli_refuses_an_escape_with_a_located_line(command: str, tmp_path: Path) -> None:
    mark = _mark(tmp_path)
    done = cli(command, str(_spec(tmp_path, "cycler_globals", mark)))
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "escape.sh:2: template error" in lines[0], done.stderr
    assert not mark.exists()


@pytest.fixture
def served(home: Path, tmp_path: Path) -> Iterator[Served]:
    with serving(home, tmp_path) as running:
        yield running


def test_the_server_refuses_every_escape_and_runs_none(served: Served, tmp_path: Path) -> None:
    api = served.client(served.token())
    mark = _mark(tmp_path)
    for name in sorted(ESCAPES):
        inline = _payload(name, mark).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        spec = f'name: sandboxed\ngroups:\n  web:\n    scripts:\n      - name: escape.sh\n        content: "{inline}"\n'
        for route in ("/v1/plan", "/v1/infrastructures"):
            answer = api.post(route, content=spec, headers={"Content-Type": "application/yaml"})
            assert answer.status_code == 400, (name, route, answer.status_code, answer.text)
            assert "template error" in answer.text, (name, answer.text)
        assert not mark.exists(), name
    assert api.get("/v1/infrastructures").json() == []
