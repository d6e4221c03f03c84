"""deploy/ against the real CLI and settings, and the Kubernetes manifests against their schemas (offline)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import click
import deployfiles
import kubernetes_validate
import pytest
import yaml
from deployfiles import Found

from agents import cli as agent_cli
from agents import config as agent_config
from engine import cli as engine_cli

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROGRAMS: dict[str, click.Command] = {"converge": engine_cli.main, "converge-agent": agent_cli.main}
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))


def _everything() -> list[Found]:
    found: list[Found] = []
    compose = DEPLOY / "compose" / "docker-compose.yml"
    found += deployfiles.compose_found(yaml.safe_load(compose.read_text()), str(compose))
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        text = unit.read_text()
        found += deployfiles.unit_commands(text, unit.name)
        found += [Found(unit.name, env=name) for name in deployfiles.env_names(text)]
    for manifest in MANIFESTS:
        for doc in yaml.safe_load_all(manifest.read_text()):
            found += deployfiles.k8s_found(doc, manifest.name)
    for example in sorted((DEPLOY / "examples").glob("*.env")):
        found += [Found(example.name, env=name) for name in deployfiles.env_names(example.read_text())]
    return found


def test_every_command_option_and_variable_of_deploy_is_real() -> None:
    found = _everything()
    problems = deployfiles.check(found, PROGRAMS, deployfiles.known_env())
    assert problems == []
    # it did read them: the engine, the agents and a variable of each kind of file
    commands = {item.argv[:3] for item in found if item.argv}
    assert ("converge", "engine", "run") in commands
    assert ("converge-agent", "run", "--role") in commands
    # and the probes: the compose health checks and the Kubernetes exec probes
    probes = {item.argv for item in found if item.where.endswith(("healthcheck", "probe"))}
    assert ("converge", "engine", "ready", "--url", "https://localhost:8765") in probes
    assert {("converge-agent", "health"), ("converge-agent", "health", "--alive")} <= probes
    assert {item.where.split(":")[0] for item in found if item.env} >= {"engine.env", "configmap.yaml"}


def test_the_example_agent_file_has_only_real_keys() -> None:
    data = tomllib.loads((DEPLOY / "examples" / "agent.toml").read_text())
    assert set(data) - set(agent_config.KEYS) == set()
    agent_config.AgentSettings.model_validate(data)


def test_a_renamed_option_a_renamed_command_and_an_unknown_variable_are_all_reported() -> None:
    found = [
        Found("x.service", argv=("converge", "engine", "run", "--api-bnd", "0.0.0.0:8765")),
        Found("x.service", argv=("/usr/bin/converge-agent", "start", "--role", "web")),
        Found("x.service", argv=("converge-agent", "run", "--role", "web", "--throttle=5", "--rol", "x")),
        Found("engine.env", env="CONVERGE_BROKER_ULR"),
        Found("engine.env", env="CONVERGE_STORE_URL"),
    ]
    problems = deployfiles.check(found, PROGRAMS, deployfiles.known_env())
    assert len(problems) == 4
    assert "has no option '--api-bnd'" in problems[0]
    assert "has no command 'start'" in problems[1]
    assert "has no option '--rol'" in problems[2]
    assert "CONVERGE_BROKER_ULR is not a Converge setting" in problems[3]


def test_a_shell_script_in_a_command_is_split_into_its_converge_commands() -> None:
    argv = ["sh", "-c", "converge engine init --san a && converge engine run --bogus"]
    commands = list(deployfiles.split_commands(argv))
    assert commands == [
        ("converge", "engine", "init", "--san", "a"),
        ("converge", "engine", "run", "--bogus"),
    ]
    assert deployfiles.check_command(commands[1], PROGRAMS) == [
        "'converge engine run --bogus': converge engine run has no option '--bogus'"
    ]


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_each_kubernetes_manifest_passes_the_schema_check(manifest: Path) -> None:
    version = kubernetes_validate.latest_version()
    docs = list(yaml.safe_load_all(manifest.read_text()))
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any schema error


def test_the_schema_check_refuses_a_wrong_manifest() -> None:
    doc = yaml.safe_load((DEPLOY / "kubernetes" / "engine.yaml").read_text().split("---")[0])
    doc["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
