"""Extension files: the execution policy, what they replace or wrap, and what happens when one is wrong."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agents.extensions import Extension, ExtensionError, load, load_file, refusal
from common.models import Change
from workflows.capabilities import CAPABILITY_TEST, CapabilityDocument, to_json
from workflows.context import NullContext
from workflows.execute import execute
from workflows.registry import Registry, default_registry

ME = os.geteuid()
FILE = stat.S_IFREG


@pytest.mark.parametrize(
    ("uid", "mode", "policy", "refused"),
    [
        (ME, FILE | 0o644, "restricted", None),
        (0, FILE | 0o600, "restricted", None),
        (ME, FILE | 0o664, "restricted", "writable by group (mode 0664)"),
        (ME, FILE | 0o646, "restricted", "writable by others (mode 0646)"),
        (ME, FILE | 0o666, "restricted", "writable by group and others"),
        (ME + 4242, FILE | 0o644, "restricted", f"owned by uid {ME + 4242}"),
        (ME, FILE | 0o666, "unrestricted", None),
        (ME + 4242, FILE | 0o644, "unrestricted", None),
        (ME, stat.S_IFIFO | 0o644, "unrestricted", "not a regular file"),
    ],
)
def test_the_execution_policy(uid: int, mode: int, policy: str, refused: str | None) -> None:
    why = refusal(uid, mode, ME, policy)  # type: ignore[arg-type]
    assert (why is None) if refused is None else (why is not None and refused in why)


def write(folder: Path, name: str, text: str, mode: int = 0o644) -> Path:
    path = folder / name
    path.write_text(text)
    path.chmod(mode)
    return path


def run_file(registry: Registry, path: Path, content: str = "hi") -> None:
    execute(registry, "file", {"path": str(path), "content": content}, "apply", NullContext())


def test_a_replaced_apply_runs_instead_of_the_built_in(tmp_path: Path) -> None:
    registry = default_registry()
    ext = write(
        tmp_path,
        "shout.py",
        "def register(ext):\n"
        "    builtin = ext.builtin('file', 'apply')\n"
        "    def apply(spec, change, ctx):\n"
        "        builtin(spec.model_copy(update={'content': spec.content.upper()}), change, ctx)\n"
        "    ext.replace('file', 'apply', apply)\n",
    )

    report = load_file(registry, ext, "restricted")
    run_file(registry, tmp_path / "out")

    assert (report.state, report.overrides) == ("loaded", ["replaces file.apply"])
    assert (tmp_path / "out").read_text() == "HI"


def test_hooks_run_before_and_after_and_an_after_check_may_change_the_change(tmp_path: Path) -> None:
    registry = default_registry()
    calls: list[str] = []
    ext = Extension(registry)
    ext.before("file", "apply", lambda spec, change, ctx: calls.append(f"before {change.action}"))
    ext.after("file", "apply", lambda spec, change, ctx: calls.append("after"))
    ext.after(
        "file", "check", lambda spec, ctx, change: Change(action="none") if spec.content == "skip" else None
    )
    assert ext.commit() == ["runs before file.apply", "runs after file.apply", "runs after file.check"]

    run_file(registry, tmp_path / "a")
    run_file(registry, tmp_path / "b", content="skip")

    assert calls == ["before create", "after"]
    assert (tmp_path / "a").read_text() == "hi" and not (tmp_path / "b").exists()
    assert registry.get("file").kind == "file"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            "ext.replace('fil', 'apply', print)",
            "unknown kind 'fil' (known kinds: catalog, command, directory, file, group, machine_import, package, user, wait_for)",
        ),
        ("ext.before('file', 'plan', print)", "unknown part 'plan' of a kind (known parts: check, apply)"),
        (
            "ext.validator('capability', print)",
            "unknown validator 'capability' (known validators: capability_test)",
        ),
        ("ext.replace('file', 'apply', 42)", "file.apply: expected a function, got int"),
    ],
)
def test_registering_an_unknown_name_is_refused_with_the_known_names(
    tmp_path: Path, call: str, message: str
) -> None:
    registry = default_registry()
    before = registry.get("file")
    path = write(
        tmp_path, "bad.py", f"def register(ext):\n    ext.after('file', 'apply', print)\n    {call}\n"
    )

    report = load_file(registry, path, "restricted")

    assert (report.state, report.problem) == ("failed", message)
    assert registry.get("file") is before  # nothing of the file took effect, not even its first call


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("def register(ext)\n    pass\n", "syntax error at line 1"),
        ("raise RuntimeError('no database')\n", "raised RuntimeError: no database"),
        ("import not_a_module_anywhere\n", "raised ModuleNotFoundError"),
        ("x = 1\n", "defines no register(ext) function"),
        ("def register(ext):\n    raise ValueError('oops')\n", "raised ValueError: oops"),
    ],
)
def test_a_broken_file_fails_alone_and_the_built_ins_stay(tmp_path: Path, text: str, problem: str) -> None:
    registry = default_registry()
    write(tmp_path, "a_broken.py", text)
    write(tmp_path, "b_fine.py", "def register(ext):\n    ext.after('file', 'apply', lambda *a: None)\n")

    loaded = load(registry, tmp_path, "restricted")

    assert [(f.path.name, f.state) for f in loaded.files] == [
        ("a_broken.py", "failed"),
        ("b_fine.py", "loaded"),
    ]
    assert len(loaded.problems) == 1 and problem in loaded.problems[0]
    assert str(tmp_path / "a_broken.py") in loaded.problems[0]


def test_a_group_writable_file_is_refused_when_restricted_and_loads_when_unrestricted(tmp_path: Path) -> None:
    path = write(tmp_path, "open.py", "def register(ext):\n    ext.after('file', 'apply', print)\n", 0o664)

    refused = load(default_registry(), tmp_path, "restricted")
    loaded = load(default_registry(), tmp_path, "unrestricted")

    assert refused.files[0].state == "refused"
    assert refused.problems == [
        f"{path}: refused: refused by execution policy restricted: writable by group (mode 0664): `chmod go-w` "
        "it, or set execution_policy=unrestricted to load it anyway"
    ]
    assert (loaded.files[0].state, loaded.problems) == ("loaded", [])


def test_no_folder_means_no_extensions_and_no_problem(tmp_path: Path) -> None:
    loaded = load(default_registry(), tmp_path / "none", "restricted")
    assert (loaded.files, loaded.problems) == ([], [])


def test_the_example_extension_relaxes_the_capability_test_to_ignore_updates() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "extensions" / "relax_capabilities.py"
    registry = default_registry()
    expected = CapabilityDocument(applications={"nginx": "1.22"}, updates=frozenset({"KB1"}))
    actual = CapabilityDocument(applications={"nginx": "1.24"}, updates=frozenset({"KB2"}))
    strict = registry.validator(CAPABILITY_TEST)(to_json(expected), to_json(actual))

    report = load_file(registry, example, "unrestricted")
    relaxed = registry.validator(CAPABILITY_TEST)(to_json(expected), to_json(actual))

    assert report.overrides == ["replaces validator capability_test"]
    assert [d.section for d in strict] == ["applications", "updates", "updates"]
    assert [str(d) for d in relaxed] == ["application nginx is 1.24, expected 1.22"]


def test_an_extension_error_is_what_an_unknown_kind_raises() -> None:
    with pytest.raises(ExtensionError, match="known kinds"):
        Extension(default_registry()).builtin("nope", "apply")


def test_a_symbolic_link_to_an_allowed_file_loads_and_its_target_is_checked(tmp_path: Path) -> None:
    target = write(tmp_path, "real.txt", "def register(ext):\n    ext.after('file', 'apply', print)\n", 0o666)
    folder = tmp_path / "extensions"
    folder.mkdir()
    (folder / "linked.py").symlink_to(target)

    refused = load(default_registry(), folder, "restricted")
    target.chmod(0o644)
    loaded = load(default_registry(), folder, "restricted")

    assert refused.files[0].state == "refused" and "writable by group and others" in str(
        refused.files[0].problem
    )
    assert loaded.files[0].state == "loaded"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a link another owner takes root")
def test_another_user_s_symbolic_link_is_refused_when_restricted(tmp_path: Path) -> None:
    target = write(tmp_path, "real.txt", "def register(ext):\n    ext.after('file', 'apply', print)\n")
    folder = tmp_path / "extensions"
    folder.mkdir()
    link = folder / "linked.py"
    link.symlink_to(target)
    os.lchown(link, 4242, 4242)

    refused = load(default_registry(), folder, "restricted")
    loaded = load(default_registry(), folder, "unrestricted")

    assert refused.files[0].state == "refused" and "a symbolic link owned by uid 4242" in str(
        refused.files[0].problem
    )
    assert loaded.files[0].state == "loaded"
