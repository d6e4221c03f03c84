"""The built-in resource kinds: `file`, `directory`, `command`, `wait_for`, `package`, `user` and `group`,
and the engine-local agent's `catalog` and `machine_import`."""

from __future__ import annotations

from typing import Any

from workflows.kinds.command import CommandProvider, CommandSpec
from workflows.kinds.directory import DirectoryProvider, DirectorySpec
from workflows.kinds.file import FileProvider, FileSpec
from workflows.kinds.group import GroupProvider, GroupSpec
from workflows.kinds.imports import CatalogProvider, MachineImportProvider
from workflows.kinds.package import PackageProvider, PackageSpec
from workflows.kinds.user import UserProvider, UserSpec
from workflows.kinds.wait_for import WaitForProvider, WaitForSpec
from workflows.registry import Provider

__all__ = [
    "CatalogProvider",
    "CommandProvider",
    "CommandSpec",
    "DirectoryProvider",
    "DirectorySpec",
    "FileProvider",
    "FileSpec",
    "GroupProvider",
    "GroupSpec",
    "MachineImportProvider",
    "PackageProvider",
    "PackageSpec",
    "UserProvider",
    "UserSpec",
    "WaitForProvider",
    "WaitForSpec",
    "builtin_providers",
]


def builtin_providers() -> list[Provider[Any]]:
    """A fresh instance of each built-in provider, for a registry to hold."""
    return [
        FileProvider(),
        DirectoryProvider(),
        CommandProvider(),
        WaitForProvider(),
        PackageProvider(),
        UserProvider(),
        GroupProvider(),
        CatalogProvider(),
        MachineImportProvider(),
    ]
