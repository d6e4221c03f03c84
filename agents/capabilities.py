"""This host's capability document, from what Linux really has (workflows.capabilities says what one is).

- applications: the installed Debian packages and their versions (`dpkg-query`); none on a host without dpkg;
- os: ID, VERSION_ID and PRETTY_NAME from /etc/os-release;
- updates: the point release of the OS (Debian's /etc/debian_version), the nearest Linux has to an update
  list: a patched package already shows as another version under applications;
- associations: each file extension's MIME type (/etc/mime.types) and each MIME type's default
  application (mimeinfo.cache of the system's application folders), whichever of them exist.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from agents.enroll import os_release
from common.errors import BadInput
from workflows.capabilities import CapabilityDocument, CapabilityError, parse

MIME_TYPES = Path("/etc/mime.types")
MIMEINFO_CACHES = (
    Path("/usr/share/applications/mimeinfo.cache"),
    Path("/usr/local/share/applications/mimeinfo.cache"),
)
DEBIAN_VERSION = Path("/etc/debian_version")
DPKG_TIMEOUT_S = 60.0


def host_document() -> CapabilityDocument:
    """What this host has now."""
    release = os_release()
    return CapabilityDocument(
        os={k: v for k, v in release.items() if k in ("ID", "VERSION_ID", "PRETTY_NAME")},
        applications=debian_packages(),
        updates=frozenset(point_release(release.get("ID", "linux"))),
        associations=extension_types(_read(MIME_TYPES)) | default_applications(map(_read, MIMEINFO_CACHES)),
    )


def document_from_file(path: Path) -> CapabilityDocument:
    """The document in `path` (XML or JSON), as BadInput naming the file when it cannot be read."""
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot read the capability document {path}: {exc.strerror}") from exc
    try:
        return parse(text, str(path))
    except CapabilityError as exc:
        raise BadInput(str(exc)) from exc


def debian_packages() -> dict[str, str]:
    """Installed packages (dpkg status `ii`) by name (with `:arch` for a foreign one) and version."""
    if shutil.which("dpkg-query") is None:
        return {}
    fmt = "${binary:Package}\t${Version}\t${db:Status-Abbrev}\n"
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", fmt],
            capture_output=True,
            text=True,
            timeout=DPKG_TIMEOUT_S,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_dpkg(out)


def parse_dpkg(out: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[2].strip() == "ii":
            found[parts[0]] = parts[1]
    return found


def point_release(os_id: str) -> list[str]:
    text = _read(DEBIAN_VERSION).strip()
    return [f"{os_id} {text}"] if text else []


def extension_types(text: str) -> dict[str, str]:
    """mime.types lines (`text/html html htm`) as {".html": "text/html", ".htm": "text/html"}."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        for extension in fields[1:]:
            found.setdefault(f".{extension}", fields[0])
    return found


def default_applications(texts: Iterable[str]) -> dict[str, str]:
    """mimeinfo.cache's `[MIME Cache]` lines (`text/html=firefox.desktop;...`): the first application each."""
    found: dict[str, str] = {}
    for text in texts:
        for line in text.splitlines():
            mime, sep, apps = line.partition("=")
            first = apps.split(";", 1)[0].strip()
            if sep and "/" in mime and first:
                found.setdefault(mime.strip(), first)
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
