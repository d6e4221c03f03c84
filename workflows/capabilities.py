"""Capability documents and the capability test (the seed's Test-CamWorkloadMachineCapability).

A capability document says what a machine offers the applications it serves: the applications installed,
with their versions; the operating system's release and the updates applied to it; and the file-type
associations (which MIME type a file extension is, which application opens a MIME type). The capability
test takes the expected and the actual document of a machine and returns their differences; by default
they must be identical. An extension may replace the test (`ext.validator(CAPABILITY_TEST, fn)`).

Documents are read as XML (the schema is in docs/extensions.md) or JSON, and written as either. This
module is pure: reading the host is agents.capabilities' job.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree  # writing only: reading goes through defusedxml
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import defusedxml.ElementTree as SafeElementTree
from defusedxml import DefusedXmlException

CAPABILITY_TEST = "capability_test"
"""The name under which the capability test is registered, and replaced by an extension."""

SCHEMA_VERSION = "1"
Section = Literal["os", "applications", "updates", "associations"]


class CapabilityError(ValueError):
    """A capability document that cannot be read: the message says where and what."""


@dataclass(frozen=True)
class CapabilityDocument:
    """What a machine offers. `os` holds os-release fields (ID, VERSION_ID...); `updates` are ids."""

    os: dict[str, str] = field(default_factory=dict)
    applications: dict[str, str] = field(default_factory=dict)  # name -> version
    updates: frozenset[str] = frozenset()
    associations: dict[str, str] = field(default_factory=dict)  # ".ext" -> MIME type, MIME type -> app


@dataclass(frozen=True, order=True)
class Difference:
    """One way the actual document differs from the expected one; None where a side has no such entry."""

    section: Section
    name: str
    expected: str | None
    actual: str | None

    def __str__(self) -> str:
        what = f"{_LABEL[self.section]} {self.name}"
        if self.section == "updates":
            return f"{what} is missing" if self.actual is None else f"{what} is not expected"
        if self.actual is None:
            return f"{what} {self.expected} is missing"
        if self.expected is None:
            return f"{what} {self.actual} is not expected"
        return f"{what} is {self.actual}, expected {self.expected}"

    def as_dict(self) -> dict[str, str | None]:
        return {"section": self.section, "name": self.name, "expected": self.expected, "actual": self.actual}


_LABEL = {"os": "os", "applications": "application", "updates": "update", "associations": "association"}

Validator = Callable[[str, str], list[Difference]]
"""A capability test: the expected and the actual document (XML or JSON text), and their differences."""


def differences(expected: CapabilityDocument, actual: CapabilityDocument) -> list[Difference]:
    """Every difference between two documents, by section then name: identical documents give []."""
    found = _mapping_differences("os", expected.os, actual.os)
    found += _mapping_differences("applications", expected.applications, actual.applications)
    found += [Difference("updates", u, u, None) for u in sorted(expected.updates - actual.updates)]
    found += [Difference("updates", u, None, u) for u in sorted(actual.updates - expected.updates)]
    found += _mapping_differences("associations", expected.associations, actual.associations)
    return found


def _mapping_differences(
    section: Section, expected: Mapping[str, str], actual: Mapping[str, str]
) -> list[Difference]:
    names = sorted(set(expected) | set(actual))
    return [
        Difference(section, name, expected.get(name), actual.get(name))
        for name in names
        if expected.get(name) != actual.get(name)
    ]


def strict_test(expected: str, actual: str) -> list[Difference]:
    """The built-in capability test: the documents must be identical."""
    return differences(parse(expected, "the expected document"), parse(actual, "the actual document"))


# Reading ------------------------------------------------------------------------------------------------


def parse(text: str, what: str = "the capability document") -> CapabilityDocument:
    """A document from its XML (starts with `<`) or JSON text. CapabilityError says what is wrong."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("<"):
        return from_xml(stripped, what)
    return from_json(stripped, what)


def from_json(text: str, what: str = "the capability document") -> CapabilityDocument:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CapabilityError(f"{what} is neither XML nor valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CapabilityError(f"{what}: expected a JSON object with applications, updates, associations")
    unknown = set(data) - {"schema", "os", "applications", "updates", "associations"}
    if unknown:
        raise CapabilityError(f"{what}: unknown field(s) {', '.join(sorted(unknown))}")
    updates = data.get("updates", [])
    if not isinstance(updates, list) or not all(isinstance(u, str) for u in updates):
        raise CapabilityError(f"{what}: updates must be a list of update ids (strings)")
    return CapabilityDocument(
        os=_strings(data.get("os", {}), f"{what}: os"),
        applications=_strings(data.get("applications", {}), f"{what}: applications"),
        updates=frozenset(updates),
        associations=_strings(data.get("associations", {}), f"{what}: associations"),
    )


def _strings(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise CapabilityError(f"{what} must be an object of names to strings")
    return dict(value)


def from_xml(text: str, what: str = "the capability document") -> CapabilityDocument:
    """Parsed with defusedxml: entity expansion (billion laughs), external entities and DTDs are refused."""
    try:
        root = SafeElementTree.fromstring(text, forbid_dtd=True)
    except DefusedXmlException as exc:
        name = type(exc).__name__
        raise CapabilityError(f"{what}: refused unsafe XML ({name}): no DTD or entities allowed") from exc
    except ElementTree.ParseError as exc:
        raise CapabilityError(f"{what} is not well-formed XML: {exc}") from exc
    if root.tag != "capabilities":
        raise CapabilityError(f"{what}: the root element is <{root.tag}>, expected <capabilities>")
    os_element = root.find("os")
    return CapabilityDocument(
        os=dict(os_element.attrib) if os_element is not None else {},
        applications=_pairs(root, "applications/application", "name", "version", what),
        updates=frozenset(_pairs(root, "updates/update", "id", None, what)),
        associations=_pairs(root, "associations/association", "name", "value", what),
    )


def _pairs(root: ElementTree.Element, path: str, key: str, value: str | None, what: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for element in root.iterfind(path):
        if key not in element.attrib or (value is not None and value not in element.attrib):
            wanted = f"{key}" + (f" and {value}" if value else "")
            raise CapabilityError(f"{what}: <{element.tag}> needs the attribute(s) {wanted}")
        found[element.attrib[key]] = element.attrib[value] if value else ""
    return found


# Writing ------------------------------------------------------------------------------------------------


def to_json(document: CapabilityDocument) -> str:
    return json.dumps(
        {
            "schema": SCHEMA_VERSION,
            "os": document.os,
            "applications": document.applications,
            "updates": sorted(document.updates),
            "associations": document.associations,
        },
        indent=2,
        sort_keys=True,
    )


def to_xml(document: CapabilityDocument) -> str:
    root = ElementTree.Element("capabilities", schema=SCHEMA_VERSION)
    ElementTree.SubElement(root, "os", dict(sorted(document.os.items())))
    _children(root, "applications", "application", document.applications, "name", "version")
    updates = ElementTree.SubElement(root, "updates")
    for update in sorted(document.updates):
        ElementTree.SubElement(updates, "update", id=update)
    _children(root, "associations", "association", document.associations, "name", "value")
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _children(
    root: ElementTree.Element, group: str, tag: str, values: Mapping[str, str], key: str, value: str
) -> None:
    parent = ElementTree.SubElement(root, group)
    for name in sorted(values):
        ElementTree.SubElement(parent, tag, {key: name, value: values[name]})
