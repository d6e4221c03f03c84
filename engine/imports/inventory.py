"""The inventory-folder import source: one file per machine, NAME.yaml, NAME.yml or NAME.json, holding
{name: HOST, catalog: CATALOG}. Reading only; a file that does not say both is reported, not imported."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Listed:
    name: str  # the host name the machine's agent reports
    catalog: str


@dataclass(frozen=True)
class Listing:
    machines: list[Listed]
    problems: list[str]  # one line per file that could not be read: its path and what to fix


def read_folder(folder: Path) -> Listing:
    if not folder.is_dir():
        raise FileNotFoundError(f"inventory folder {folder} does not exist or is not a folder")
    machines: dict[str, Listed] = {}
    problems: list[str] = []
    for path in sorted(folder.iterdir()):
        if path.suffix not in SUFFIXES or not path.is_file():
            continue
        try:
            listed = _read_file(path)
        except ValueError as exc:
            problems.append(f"{path}: {exc}")
            continue
        if listed.name in machines:
            problems.append(f"{path}: host {listed.name!r} is listed by another file too; keep one")
            continue
        machines[listed.name] = listed
    return Listing(machines=list(machines.values()), problems=problems)


def _read_file(path: Path) -> Listed:
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot be read ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ValueError("must hold a mapping {name: HOST, catalog: CATALOG}")
    name, catalog = data.get("name"), data.get("catalog")
    for key, value in (("name", name), ("catalog", catalog)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"`{key}` must be a non-empty string (name: HOST, catalog: CATALOG)")
    assert isinstance(name, str) and isinstance(catalog, str)
    return Listed(name=name.strip(), catalog=catalog.strip())
