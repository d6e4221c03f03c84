"""This host's capability document: what dpkg, mime.types and mimeinfo.cache say, read as the document."""

from __future__ import annotations

import shutil

import pytest

from agents.capabilities import default_applications, extension_types, host_document, parse_dpkg
from workflows.capabilities import parse, to_json, to_xml


def test_only_installed_packages_count_with_their_versions() -> None:
    out = "bash\t5.2.15-2+b2\tii \nold\t1.0\trc \nlibc6:i386\t2.36-9\tii \n"
    assert parse_dpkg(out) == {"bash": "5.2.15-2+b2", "libc6:i386": "2.36-9"}


def test_mime_types_give_each_extension_its_type_and_comments_are_skipped() -> None:
    text = "# comment\ntext/html\t\thtml htm shtml\napplication/x-empty\ntext/plain txt # trailing\n"
    assert extension_types(text) == {
        ".html": "text/html",
        ".htm": "text/html",
        ".shtml": "text/html",
        ".txt": "text/plain",
    }


def test_mimeinfo_cache_gives_each_type_its_first_application() -> None:
    text = "[MIME Cache]\ntext/html=firefox.desktop;chromium.desktop;\nimage/png=eog.desktop;\n"
    assert default_applications([text, "text/html=other.desktop;"]) == {
        "text/html": "firefox.desktop",
        "image/png": "eog.desktop",
    }


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a Debian host")
def test_the_host_document_holds_dpkg_s_packages_and_reads_back_as_itself() -> None:
    document = host_document()
    assert "dpkg" in document.applications
    assert parse(to_xml(document)) == document
    assert parse(to_json(document)) == document
