"""The capability test: the exact differences between an expected and an actual capability document, read
as XML or as JSON."""

from __future__ import annotations

from dataclasses import replace

import pytest

from workflows.capabilities import (
    CapabilityDocument,
    CapabilityError,
    Difference,
    parse,
    strict_test,
    to_json,
    to_xml,
)

BASE = CapabilityDocument(
    os={"ID": "debian", "VERSION_ID": "12"},
    applications={"nginx": "1.22.1-9", "curl": "7.88.1-10"},
    updates=frozenset({"debian 12.11"}),
    associations={".html": "text/html", "text/html": "firefox.desktop"},
)

CASES = [
    pytest.param(BASE, [], id="identical"),
    pytest.param(
        replace(BASE, applications={"nginx": "1.22.1-9"}),
        [Difference("applications", "curl", "7.88.1-10", None)],
        id="a missing application",
    ),
    pytest.param(
        replace(BASE, applications={"nginx": "1.24.0-1", "curl": "7.88.1-10"}),
        [Difference("applications", "nginx", "1.22.1-9", "1.24.0-1")],
        id="another version",
    ),
    pytest.param(
        replace(BASE, applications={**BASE.applications, "vim": "9.0"}),
        [Difference("applications", "vim", None, "9.0")],
        id="an extra application",
    ),
    pytest.param(
        replace(BASE, updates=frozenset({"debian 12.11", "KB5034441"})),
        [Difference("updates", "KB5034441", None, "KB5034441")],
        id="an extra update",
    ),
    pytest.param(
        replace(BASE, updates=frozenset()),
        [Difference("updates", "debian 12.11", "debian 12.11", None)],
        id="a missing update",
    ),
    pytest.param(
        replace(BASE, associations={".html": "text/plain", "text/html": "firefox.desktop"}),
        [Difference("associations", ".html", "text/html", "text/plain")],
        id="a changed association",
    ),
    pytest.param(
        replace(BASE, os={"ID": "debian", "VERSION_ID": "13"}),
        [Difference("os", "VERSION_ID", "12", "13")],
        id="another os release",
    ),
    pytest.param(
        CapabilityDocument(
            os=BASE.os,
            applications={"nginx": "1.24.0-1"},
            updates=frozenset({"debian 12.11", "debian 12.12"}),
            associations={".html": "text/html", "text/html": "chromium.desktop"},
        ),
        [
            Difference("applications", "curl", "7.88.1-10", None),
            Difference("applications", "nginx", "1.22.1-9", "1.24.0-1"),
            Difference("updates", "debian 12.12", None, "debian 12.12"),
            Difference("associations", "text/html", "firefox.desktop", "chromium.desktop"),
        ],
        id="several at once, by section then name",
    ),
]


@pytest.mark.parametrize("write", [to_xml, to_json], ids=["xml", "json"])
@pytest.mark.parametrize(("actual", "expected_differences"), CASES)
def test_the_capability_test_returns_exactly_the_differences(
    write: object, actual: CapabilityDocument, expected_differences: list[Difference]
) -> None:
    assert callable(write)
    assert strict_test(write(BASE), write(actual)) == expected_differences


def test_an_xml_expected_document_compares_with_a_json_actual_one() -> None:
    actual = replace(BASE, applications={"nginx": "1.22.1-9"})
    assert strict_test(to_xml(BASE), to_json(actual)) == [
        Difference("applications", "curl", "7.88.1-10", None)
    ]


@pytest.mark.parametrize(
    ("difference", "reads"),
    [
        (Difference("applications", "curl", "7.88", None), "application curl 7.88 is missing"),
        (Difference("applications", "nginx", "1.22", "1.24"), "application nginx is 1.24, expected 1.22"),
        (Difference("applications", "vim", None, "9.0"), "application vim 9.0 is not expected"),
        (Difference("updates", "KB1", None, "KB1"), "update KB1 is not expected"),
        (Difference("updates", "KB1", "KB1", None), "update KB1 is missing"),
        (
            Difference("associations", ".html", "text/html", "text/plain"),
            "association .html is text/plain, expected text/html",
        ),
    ],
)
def test_a_difference_reads_as_a_sentence(difference: Difference, reads: str) -> None:
    assert str(difference) == reads


def test_a_handwritten_xml_document_reads_as_the_schema_says() -> None:
    text = """<?xml version="1.0"?>
    <capabilities schema="1">
      <os ID="debian" VERSION_ID="12"/>
      <applications><application name="nginx" version="1.22"/></applications>
      <updates><update id="KB1"/></updates>
      <associations><association name=".html" value="text/html"/></associations>
    </capabilities>"""
    assert parse(text) == CapabilityDocument(
        os={"ID": "debian", "VERSION_ID": "12"},
        applications={"nginx": "1.22"},
        updates=frozenset({"KB1"}),
        associations={".html": "text/html"},
    )


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<capabilities><applications><application name="&lol2;" version="1"/></applications></capabilities>"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE c [<!ENTITY x SYSTEM "file:///etc/passwd">]><capabilities><os ID="&x;"/></capabilities>"""


@pytest.mark.parametrize("text", [BILLION_LAUGHS, EXTERNAL], ids=["entity expansion", "external entity"])
def test_xml_with_a_dtd_or_entities_is_refused(text: str) -> None:
    with pytest.raises(CapabilityError, match="refused unsafe XML"):
        parse(text, "image.xml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<capabilities><applications>", "image.xml is not well-formed XML"),
        ("<machine/>", "the root element is <machine>, expected <capabilities>"),
        (
            '<capabilities><applications><application name="x"/></applications></capabilities>',
            "needs the attribute",
        ),
        ("{not json", "image.xml is neither XML nor valid JSON"),
        ('{"applications": {"x": 1}}', "applications must be an object of names to strings"),
        ('{"updates": "KB1"}', "updates must be a list"),
        ('{"programs": {}}', "unknown field"),
        ("[1]", "expected a JSON object"),
    ],
)
def test_a_bad_document_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(CapabilityError, match=message):
        parse(text, "image.xml")
