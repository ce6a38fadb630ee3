"""A node's cloud-config, as cloud-init reads it on a cloud, or as a script where nothing boots.

On a cloud the whole cloud-config goes as first-boot user data (the driver adds the user cloudherd logs
in as): every module cloud-init has keeps its meaning.  A ``local`` node does not boot, so its
cloud-config is rendered to a shell script that does the same for the modules that make sense on an
already running machine (:data:`SCRIPTED`); the others are named in a warning (:data:`IGNORED_LOCALLY`:
what cloud-init would do to a machine that the host already does) or refused (:data:`NOT_LOCAL`: what
the node would then lack).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from typing import Any

SCRIPTED = ("bootcmd", "users", "apt_update", "package_update", "package_upgrade", "apt_upgrade", "packages",
            "write_files", "runcmd")
IGNORED_LOCALLY = {
    "output": "a local node's output is the script's, shown by cloudherd",
    "timezone": "a local node keeps the host's time zone",
    "ntp": "a local node keeps the host's clock",
    "final_message": "nothing boots on a local node",
    "ssh_pwauth": "cloudherd logs in with its key",
    "disable_root": "cloudherd logs in with its key",
    "manage_etc_hosts": "the host's /etc/hosts is the node's",
    "hostname": "a local node is named by cloudherd",
    "preserve_hostname": "a local node is named by cloudherd",
    "locale": "a local node keeps the host's locale",
}
NOT_LOCAL = ("chef", "puppet", "salt_minion", "apt_sources", "apt", "yum_repos", "snap", "mounts", "disk_setup",
             "fs_setup", "power_state", "phone_home", "growpart", "resize_rootfs", "ansible")

Fail = Callable[[str], Exception]


def parse(template: Any, fail: Fail) -> dict[str, Any]:
    """A cloud-config given as YAML text (``#cloud-config`` …) or already read (Occopus' ``!yaml_import``)."""
    from cloudherd.errors import SpecError
    from cloudherd.spec.yamlsafe import parse_yaml, plain

    if isinstance(template, Mapping):
        return dict(plain(template))
    try:
        config = plain(parse_yaml(str(template or ""), "cloud-config")) or {}
    except SpecError as exc:
        raise fail(f"not cloud-config YAML: {exc.message}") from None
    if not isinstance(config, dict):
        raise fail("a cloud-config is a mapping (write_files, runcmd, packages…)")
    return config


def user_data(config: Mapping[str, Any]) -> str:
    """The cloud-config as first-boot user data (Jinja expressions still in it, rendered per node)."""
    import io

    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    setattr(yaml, "sort_base_mapping_type_on_output", False)  # noqa: B010 - keep cloud-init's order as written
    stream = io.StringIO()
    stream.write("#cloud-config\n")
    yaml.dump(dict(config), stream)
    return stream.getvalue()


def local_problems(config: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(keys a local node cannot honour, with why; keys left out on a local node, with why)."""
    refused = [f"{key}: cloud-init's {key} module runs at first boot on a cloud; a local node does not boot "
               "(use a cloud provider, or do it in runcmd)" for key in config if key in NOT_LOCAL]
    ignored = [f"{key}: not applied ({IGNORED_LOCALLY.get(key, 'no local equivalent')})"
               for key in config if key not in SCRIPTED and key not in NOT_LOCAL]
    return refused, ignored


def as_script(config: Mapping[str, Any], fail: Fail) -> str:
    """The cloud-config modules of :data:`SCRIPTED` as one shell script, in cloud-init's order."""
    lines = ["#!/bin/sh", "# cloud-config rendered for a node that does not boot (cloud-init's order)", "set -e"]
    lines += [_command(c) for c in _listed(config, "bootcmd", fail)]
    for user in _listed(config, "users", fail):
        lines += _user(user, fail)
    packages = [str(p) if not isinstance(p, list) else "=".join(map(str, p)) for p in _listed(config, "packages", fail)]
    update = any(config.get(k) for k in ("apt_update", "package_update")) or bool(packages)
    upgrade = any(config.get(k) for k in ("package_upgrade", "apt_upgrade"))
    if update or upgrade:
        lines += [_PACKAGE_TOOL, "pkg_update"]
        if upgrade:
            lines.append("pkg_upgrade")
        if packages:
            lines.append("pkg_install " + " ".join(shlex.quote(p) for p in packages))
    for entry in _listed(config, "write_files", fail):
        lines += _write_file(entry, fail)
    lines += [_command(c) for c in _listed(config, "runcmd", fail)]
    return "\n".join(lines) + "\n"


def _listed(config: Mapping[str, Any], key: str, fail: Fail) -> list[Any]:
    value = config.get(key) or []
    if not isinstance(value, list):
        raise fail(f"{key}: a list")
    return value


def _command(command: Any) -> str:
    """runcmd / bootcmd entries: a string runs in a shell, a list is argv."""
    return command if isinstance(command, str) else " ".join(shlex.quote(str(c)) for c in command)


def _write_file(entry: Any, fail: Fail) -> list[str]:
    if not isinstance(entry, Mapping) or not entry.get("path"):
        raise fail("write_files: each entry has a path (and content)")
    path = str(entry["path"])
    encoding = str(entry.get("encoding") or "")
    if encoding and encoding not in ("b64", "base64", "text/plain"):
        raise fail(f"write_files {path}: encoding {encoding} is not rendered for a local node (b64 or plain)")
    marker = "CLOUDHERD_EOF"
    folder = path.rsplit("/", 1)[0] or "/"
    writer = "base64 -d" if encoding in ("b64", "base64") else "cat"
    redirect = ">>" if entry.get("append") else ">"
    out = [f"mkdir -p {shlex.quote(folder)}", f"{writer} {redirect} {shlex.quote(path)} <<'{marker}'",
           str(entry.get("content", "")).rstrip("\n"), marker]
    if entry.get("permissions"):
        out.append(f"chmod {shlex.quote(str(entry['permissions']))} {shlex.quote(path)}")
    if entry.get("owner"):
        out.append(f"chown {shlex.quote(str(entry['owner']))} {shlex.quote(path)}")
    return out


def _user(user: Any, fail: Fail) -> list[str]:
    if user == "default":
        return []  # the image's default user: a local node's is root
    if not isinstance(user, Mapping) or not user.get("name"):
        raise fail("users: each entry is 'default' or has a name")
    name = shlex.quote(str(user["name"]))
    shell = shlex.quote(str(user.get("shell") or "/bin/sh"))
    out = [f"id -u {name} >/dev/null 2>&1 || useradd -m -s {shell} {name}"]
    groups = user.get("groups")
    if groups:
        names = groups if isinstance(groups, list) else str(groups).split(",")
        out.append(f"usermod -aG {shlex.quote(','.join(str(g).strip() for g in names))} {name}")
    sudo = user.get("sudo")
    for rule in ([sudo] if isinstance(sudo, str) else sudo if isinstance(sudo, list) else []):
        out += ["mkdir -p /etc/sudoers.d",
                f"printf '%s %s\\n' {name} {shlex.quote(str(rule))} > /etc/sudoers.d/90-cloud-init-{user['name']}"]
    keys = user.get("ssh_authorized_keys") or []
    if keys:
        home = f"$(getent passwd {name} | cut -d: -f6)"
        out += [f"install -d -m 700 -o {name} {home}/.ssh",
                *(f"printf '%s\\n' {shlex.quote(str(k))} >> {home}/.ssh/authorized_keys" for k in keys),
                f"chown {name} {home}/.ssh/authorized_keys && chmod 600 {home}/.ssh/authorized_keys"]
    return out


_PACKAGE_TOOL = r"""PKG=none
for t in apt-get dnf yum zypper apk; do command -v $t >/dev/null 2>&1 && { PKG=$t; break; }; done
export DEBIAN_FRONTEND=noninteractive
pkg_update() {
  case $PKG in
    apt-get) apt-get update -q ;; apk) apk update ;;
    none) echo "cloud-config packages: no package tool on this node" >&2; exit 1 ;; *) : ;;
  esac
}
pkg_upgrade() { case $PKG in apt-get) apt-get upgrade -y -q ;; apk) apk upgrade ;; *) $PKG -y upgrade ;; esac; }
pkg_install() {
  case $PKG in apt-get) apt-get install -y -q "$@" ;; apk) apk add "$@" ;; *) $PKG -y install "$@" ;; esac
}"""
