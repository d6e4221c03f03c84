"""What the files of deploy/ ask of Converge: command lines and CONVERGE_* variables, checked against the
real click commands and settings, so that a renamed option or setting breaks the build, not a deployment.

Pure functions over parsed documents and text; tests/unit/test_deploy_files.py reads the files.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import click

from agents import config as agent_config
from common.settings import ENV_PREFIX, Settings

PROGRAMS = ("converge", "converge-agent")
_ENV_NAME = re.compile(r"\bCONVERGE_[A-Z0-9_]+\b")


@dataclass(frozen=True)
class Found:
    """A command line or a variable, and where it was found (for the message)."""

    where: str
    argv: tuple[str, ...] = ()
    env: str = ""


def known_env() -> set[str]:
    """Every CONVERGE_* variable a Converge process reads: the shared settings and the agent's."""
    shared = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    agent = {agent_config.env_name(key) for key in agent_config.KEYS}
    return shared | agent | {agent_config.CONFIG_ENV}


def split_commands(argv: Iterable[str]) -> Iterator[tuple[str, ...]]:
    """Each Converge command line in `argv`: itself, or those in a `sh -c "a && b"` script."""
    words = list(argv)
    if len(words) >= 3 and PurePosixPath(words[0]).name in ("sh", "bash") and words[1] == "-c":
        for part in re.split(r"&&|\|\||;", words[2]):
            yield from split_commands(shlex.split(part))
        return
    if words and PurePosixPath(words[0]).name in PROGRAMS:
        yield tuple(words)


def env_names(text: str) -> set[str]:
    """Every CONVERGE_* name in `text` (an env file, a unit, a comment-free value)."""
    lines = (line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return {name for line in lines for name in _ENV_NAME.findall(line)}


def unit_commands(text: str, where: str) -> list[Found]:
    """The Exec*= command lines of a systemd unit that run Converge (`%i` stands for a role)."""
    found = []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().startswith("Exec"):
            argv = shlex.split(value.strip().lstrip("-@:+!").replace("%i", "ROLE"))
            found += [Found(where, argv=cmd) for cmd in split_commands(argv)]
    return found


def compose_found(doc: Mapping[str, Any], where: str) -> list[Found]:
    """The commands (its health check's too) and CONVERGE_* variables of every service of a compose file;
    the `x-` blocks that services merge in (`<<: *engine`) are read through the services."""
    found = []
    for name, service in (doc.get("services") or {}).items():
        place = f"{where}: service {name}"
        command = service.get("command") or []
        argv = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
        found += [Found(place, argv=cmd) for cmd in split_commands(argv)]
        found += [Found(f"{place} healthcheck", argv=cmd) for cmd in healthcheck_commands(service)]
        environment = service.get("environment") or {}
        keys = environment if isinstance(environment, Mapping) else [e.partition("=")[0] for e in environment]
        found += [Found(place, env=key) for key in keys if str(key).startswith(ENV_PREFIX)]
    return found


def healthcheck_commands(service: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """The Converge command lines of a compose service's health check (`CMD ...` or `CMD-SHELL script`)."""
    test = (service.get("healthcheck") or {}).get("test") or []
    words = shlex.split(test) if isinstance(test, str) else [str(w) for w in test]
    if words[:1] == ["CMD"]:
        return list(split_commands(words[1:]))
    if words[:1] == ["CMD-SHELL"]:
        return list(split_commands(["sh", "-c", " ".join(words[1:])]))
    return []


def probe_commands(container: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """The Converge command lines of a Kubernetes container's exec probes."""
    found = []
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        command = (container.get(probe) or {}).get("exec", {}).get("command") or []
        found += list(split_commands([str(w) for w in command]))
    return found


def k8s_found(doc: Mapping[str, Any], where: str) -> list[Found]:
    """The commands and CONVERGE_* variables of a Kubernetes object (a ConfigMap's keys are variables)."""
    place = f"{where}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
    if doc.get("kind") == "ConfigMap":
        return [Found(place, env=key) for key in doc.get("data") or {} if key.startswith(ENV_PREFIX)]
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    found = []
    for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        argv = [*container.get("command", []), *container.get("args", [])]
        found += [Found(place, argv=cmd) for cmd in split_commands(argv)]
        found += [Found(f"{place} probe", argv=cmd) for cmd in probe_commands(container)]
        names = [e["name"] for e in container.get("env", [])]
        found += [Found(place, env=n) for n in names if n.startswith(ENV_PREFIX)]
    return found


def check_command(argv: tuple[str, ...], programs: Mapping[str, click.Command]) -> list[str]:
    """What is wrong with a Converge command line: an unknown command or an option its command lacks."""
    shown = " ".join(argv)
    command = programs[PurePosixPath(argv[0]).name]
    path = [PurePosixPath(argv[0]).name]
    words = list(argv[1:])
    while isinstance(command, click.Group) and words and not words[0].startswith("-"):
        sub = command.commands.get(words[0])
        if sub is None:
            return [f"{shown!r}: {' '.join(path)} has no command {words[0]!r}"]
        command, path = sub, [*path, words.pop(0)]
    if isinstance(command, click.Group):
        return [f"{shown!r}: {' '.join(path)} needs a command"]
    options = {
        opt: p for p in command.params if isinstance(p, click.Option) for opt in p.opts + p.secondary_opts
    }
    options |= {"--help": None, "-h": None}
    problems, skip = [], False
    for word in words:
        if skip:
            skip = False
            continue
        if not word.startswith("-"):
            continue
        name, eq, _ = word.partition("=")
        if name not in options:
            problems.append(f"{shown!r}: {' '.join(path)} has no option {name!r}")
            continue
        param = options[name]
        skip = bool(param is not None and not param.is_flag and not eq)
    return problems


def check(found: Iterable[Found], programs: Mapping[str, click.Command], env: set[str]) -> list[str]:
    """Every problem in `found`, each naming its place."""
    problems = []
    for item in found:
        if item.argv:
            problems += [f"{item.where}: {p}" for p in check_command(item.argv, programs)]
        elif item.env not in env:
            problems.append(f"{item.where}: {item.env} is not a Converge setting")
    return problems
