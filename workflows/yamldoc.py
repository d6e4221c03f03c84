"""Reading a desired-state YAML document: its value, and where each key and item of it is in the file.

A big desired state is read one resource at a time: the node tree of one resource (the parser's nodes and
their marks, some hundred objects) is freed before the next resource is read. Composing the whole tree
first, as `yaml.safe_load` does, keeps millions of objects alive at once, and the garbage collector, whose
full passes grow with the heap, walks them again and again: six times slower at 100,000 resources, and not
linear. Turning the collector off while loading is no answer: it is process-wide, and the engine loads
desired states from several request threads at once.

So the lines of problems are found by reading the file a second time, keeping only the nodes of the
resources that have problems: a cost paid by files with mistakes only.

A document from an untrusted sender must not cost the reader more than its size: the composer counts how
deep the document nests and how much its aliases would add once expanded, and stops at the `Limits` (a
591-byte "billion laughs" would otherwise expand to a billion values).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from workflows.limits import LIMITS, Limits, TooLarge, too_deep, too_many_resources

# A key path into the document, as pydantic reports it: ("resources", 2, "spec", "path").
Loc = tuple[str | int, ...]

STREAMED_KEY = "resources"
_STR, _SEQ, _MAP = (f"tag:yaml.org,2002:{name}" for name in ("str", "seq", "map"))


class Position(NamedTuple):
    """A 0-based line and column in the file."""

    line: int
    column: int


class Repeated(NamedTuple):
    """A key given twice in one mapping (YAML keeps the last): where it is again, and its first line."""

    key: str
    position: Position
    first_line: int  # 1-based


class _Anchors(dict[Any, yaml.Node]):
    """The composer's anchors, also remembering which nodes they name: only those can be reached twice."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes: set[int] = set()

    def __setitem__(self, name: Any, node: yaml.Node) -> None:
        super().__setitem__(name, node)
        self.nodes.add(id(node))


class _Composer(Composer):
    """PyYAML's composer, leaner: no path resolvers (the safe loader has none), plain scalars' tags cached.

    Unlike libyaml's composer it can stop after one node, which is what reading item by item needs. It
    also keeps the document within its `Limits`: how deep it nests and how much its aliases add.
    """

    anchors: _Anchors
    _TAGS_CACHED = 4096

    def __init__(self, limits: Limits) -> None:
        super().__init__()
        self.anchors = _Anchors()
        self._tags: dict[str, str] = {}
        self.limits = limits
        self._level = 0  # the mappings and lists open around the next node
        self._deepest = 0  # the deepest level reached in the node being composed
        self._weight = 0  # one per value plus its characters, aliases expanded
        self._expanded = 0  # the part of _weight that aliases added
        self._measured: dict[int, tuple[int, int]] = {}  # an anchored node: (its weight, its height)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        events: Any = self  # the parser's half of the loader
        event: Any = events.get_event()
        if isinstance(event, yaml.AliasEvent):
            return self._alias(event)
        node = self._node(event)
        if isinstance(node, yaml.ScalarNode):  # most nodes: the fast path
            weight = 1 + len(node.value)
            self._weight += weight
            if event.anchor is not None:
                self._measured[id(node)] = (weight, 0)
            return node
        start, outer = self._weight, self._deepest
        self._weight, self._deepest = self._weight + 1, self._level  # measure this node's own depth
        self.open_level(node.start_mark)
        if isinstance(node, yaml.SequenceNode):
            while not events.check_event(yaml.SequenceEndEvent):
                node.value.append(self.compose_node(node, None))
        else:
            while not events.check_event(yaml.MappingEndEvent):
                key = self.compose_node(node, None)
                node.value.append((key, self.compose_node(node, key)))
        node.end_mark = events.get_event().end_mark
        height = self._deepest - self._level + 1  # the levels this node spans
        self.close_level()
        self._deepest = max(outer, self._deepest)
        if event.anchor is not None:
            self._measured[id(node)] = (self._weight - start, height)
        return node

    def open_level(self, mark: Any) -> None:
        """A mapping or list opens: one level deeper (the reader calls it for the root and the streamed
        `resources`, which it composes itself)."""
        self._level += 1
        self._deepen(self._level, mark)

    def close_level(self) -> None:
        self._level -= 1

    def _deepen(self, level: int, mark: Any) -> None:
        self._deepest = max(self._deepest, level)
        if level > self.limits.max_depth:
            raise TooLarge(too_deep(self.limits.max_depth), mark)

    def _alias(self, event: Any) -> yaml.Node:
        if event.anchor not in self.anchors:
            message = f"alias *{event.anchor} names no anchor &{event.anchor} defined before it"
            raise ComposerError(None, None, message, event.start_mark)
        node = self.anchors[event.anchor]
        measured = self._measured.get(id(node))
        if measured is None:  # the anchor is still open: the alias is inside the value it names
            raise TooLarge(
                f"alias *{event.anchor} is inside the value it refers to (a recursive alias), which no "
                "field takes: write the value out",
                event.start_mark,
            )
        weight, height = measured
        self._deepen(self._level + height, event.start_mark)
        self._weight += weight
        self._expanded += weight
        if self._expanded > self.limits.max_alias_expansion:
            raise TooLarge(
                f"with alias *{event.anchor}, aliases expand the document by more than "
                f"{self.limits.max_alias_expansion:,} values and characters, as a YAML alias bomb does: "
                "write repeated values out, or use fewer aliases",
                event.start_mark,
            )
        return node

    def _node(self, event: Any) -> yaml.Node:
        """The node an event starts, its children still to come; registered under its anchor, if any."""
        anchor, tag, start = event.anchor, event.tag, event.start_mark
        if anchor is not None and anchor in self.anchors:
            first = self.anchors[anchor].start_mark
            message = f"anchor &{anchor} is defined twice (first at line {first.line + 1})"
            raise ComposerError(None, None, message, start)
        plain = tag is None or tag == "!"
        node: yaml.Node
        if isinstance(event, yaml.ScalarEvent):
            tag = self._scalar_tag(event.value, event.implicit) if plain else tag
            node = yaml.ScalarNode(tag, event.value, start, event.end_mark, style=event.style)  # type: ignore[arg-type]
        elif isinstance(event, yaml.SequenceStartEvent):
            node = yaml.SequenceNode(_SEQ if plain else tag, [], start, None, event.flow_style)
        else:
            node = yaml.MappingNode(_MAP if plain else tag, [], start, None, event.flow_style)
        if anchor is not None:  # before its children: they may refer to it
            self.anchors[anchor] = node
        return node

    def _scalar_tag(self, value: str, implicit: tuple[bool, bool]) -> str:
        if not implicit[0]:  # quoted: a string
            return _STR
        tag = self._tags.get(value)
        if tag is None:
            tag = self.resolve(yaml.ScalarNode, value, implicit)  # type: ignore[attr-defined]
            if len(self._tags) < self._TAGS_CACHED:
                self._tags[value] = tag
        return tag


class _Loader(Reader, Scanner, Parser, _Composer, SafeConstructor, Resolver):
    """The pure-Python safe loader with the composer above."""

    def __init__(self, text: str, limits: Limits) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        _Composer.__init__(self, limits)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


if hasattr(yaml, "CSafeLoader"):
    from yaml._yaml import CParser

    class _CLoader(CParser, _Composer, SafeConstructor, Resolver):
        """libyaml's parser with the composer above."""

        def __init__(self, text: str, limits: Limits) -> None:
            CParser.__init__(self, text)
            _Composer.__init__(self, limits)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    _new_loader: Callable[[str, Limits], Any] = _CLoader
else:  # pragma: no cover - PyYAML without libyaml
    _new_loader = _Loader


class _Streamed(yaml.SequenceNode):
    """The `resources` sequence, read item by item: its items' values and starts instead of their nodes."""

    def __init__(self, start: Any, ordinal: int) -> None:
        super().__init__(_SEQ, [], start.start_mark, start.end_mark, flow_style=start.flow_style)
        self.ordinal = ordinal
        self.built: list[Any] = []
        self.starts: list[Position] = []
        self.nodes: dict[int, yaml.Node] = {}  # the items read again to find the lines of their problems


@dataclass
class Document:
    """A YAML document read for checking: its value, where its parts are, and what YAML let through."""

    value: Any
    lines: Lines
    repeated: list[Repeated] = field(default_factory=list)
    binary: list[Loc] = field(default_factory=list)  # values given as !!binary: no field takes bytes


def read(text: str, *, stream: bool = True, limits: Limits = LIMITS) -> Document | None:
    """The single YAML document of `text`, None if it has none.

    Raises yaml.YAMLError for bad YAML, and TooLarge when the document passes one of `limits` (all but
    `max_bytes`, which the caller checks before it decodes the text).
    """
    builder = _Builder()
    reader = _Reader(text, stream, builder.bind, builder.item, limits)
    root = reader.read()
    if root is None:
        return None
    if reader.streams and not _plain_keys(root):  # merge keys at the top level: PyYAML builds it whole
        return read(text, stream=False, limits=limits)
    value = builder.build(root)
    binary = _locate(value, builder.binary) if builder.binary else []
    return Document(value, Lines(text, root, reader.streams, limits), builder.repeated, binary)


class _Reader:
    """Composes a document, the items of its top-level `resources` one at a time (see the module)."""

    def __init__(
        self,
        text: str,
        stream: bool,
        on_loader: Callable[[Any], None],
        on_item: Callable[[_Streamed, int, yaml.Node], None],
        limits: Limits,
    ) -> None:
        self.text = text
        self.limits = limits
        self.stream = stream
        self.on_loader = on_loader
        self.on_item = on_item
        self.streams: list[_Streamed] = []
        self.loader: Any = None

    def read(self) -> yaml.Node | None:
        self.loader = loader = _new_loader(self.text, self.limits)
        self.on_loader(loader)
        try:
            loader.get_event()  # the stream's start
            if loader.check_event(yaml.StreamEndEvent):
                return None
            document = loader.get_event()
            root: yaml.Node = self._root() if self.stream else loader.compose_node(None, None)
            loader.get_event()  # the document's end
            if not loader.check_event(yaml.StreamEndEvent):
                raise ComposerError(
                    "expected a single document in the stream",
                    document.start_mark,
                    "but found another document",
                    loader.get_event().start_mark,
                )
        finally:
            loader.dispose()
        return root

    def _root(self) -> yaml.Node:
        loader = self.loader
        start = loader.peek_event()
        if not (isinstance(start, yaml.MappingStartEvent) and _plain_event(start, _MAP)):
            return loader.compose_node(None, None)  # type: ignore[no-any-return]
        loader.open_level(loader.get_event().start_mark)
        pairs: list[tuple[yaml.Node, yaml.Node]] = []
        while not loader.check_event(yaml.MappingEndEvent):
            key = loader.compose_node(None, None)
            if _is_plain(key) and key.value == STREAMED_KEY and _streamable(loader.peek_event()):
                value = self._stream()
            else:
                value = loader.compose_node(None, None)
            pairs.append((key, value))
        loader.close_level()
        first: Any = start.start_mark  # libyaml's marks stand in for PyYAML's
        return yaml.MappingNode(_MAP, pairs, first, loader.get_event().end_mark, flow_style=start.flow_style)

    def _stream(self) -> _Streamed:
        loader = self.loader
        sequence = _Streamed(loader.get_event(), len(self.streams))
        self.streams.append(sequence)
        loader.open_level(sequence.start_mark)
        while not loader.check_event(yaml.SequenceEndEvent):
            if len(sequence.starts) == self.limits.max_resources:  # stop before reading the rest
                raise TooLarge(too_many_resources(self.limits.max_resources), loader.peek_event().start_mark)
            item = loader.compose_node(None, None)
            sequence.starts.append(Position(item.start_mark.line, item.start_mark.column))
            self.on_item(sequence, len(sequence.starts) - 1, item)
            loader.constructed_objects.clear()  # what PyYAML built for this item, keyed by its nodes
        loader.close_level()
        sequence.end_mark = loader.get_event().end_mark
        return sequence


def _is_plain(node: yaml.Node) -> bool:
    return node.tag == _STR and isinstance(node, yaml.ScalarNode)


def _plain_keys(node: yaml.Node) -> bool:
    return not isinstance(node, yaml.MappingNode) or all(_is_plain(key) for key, _ in node.value)


def _plain_event(event: yaml.MappingStartEvent | yaml.SequenceStartEvent, tag: str) -> bool:
    """A mapping or sequence without an anchor (nothing refers to it) and without a tag of its own."""
    return event.anchor is None and event.tag in (None, "!", tag)


def _streamable(event: yaml.Event) -> bool:
    return isinstance(event, yaml.SequenceStartEvent) and _plain_event(event, _SEQ)


class _Builder:
    """Builds the value of a node tree: plain strings, lists and mappings here, anything else by PyYAML.

    PyYAML's generic constructor costs a third of the load time of a large file; nearly every node is one
    of these three, so the others (numbers, booleans, dates, merge keys, tags) go to the loader itself.
    """

    def __init__(self) -> None:
        self._loader: Any = None
        self._built: dict[int, Any] = {}  # a node under an anchor is built once and shared, as in PyYAML
        self.repeated: list[Repeated] = []
        self.binary: list[bytes] = []

    def bind(self, loader: Any) -> None:
        self._loader = loader

    def item(self, sequence: _Streamed, _index: int, node: yaml.Node) -> None:
        sequence.built.append(self.build(node))

    def build(self, node: yaml.Node) -> Any:
        if node.tag == _STR and isinstance(node, yaml.ScalarNode):
            return node.value
        if isinstance(node, _Streamed):
            return node.built
        key = id(node)
        if key in self._built:
            return self._built[key]
        shared = key in self._loader.anchors.nodes
        if node.tag == _SEQ and isinstance(node, yaml.SequenceNode):
            items: list[Any] = []
            if shared:
                self._built[key] = items
            items.extend(self.build(item) for item in node.value)
            return items
        if node.tag == _MAP and isinstance(node, yaml.MappingNode) and _plain_keys(node):
            return self._mapping(node, shared)
        value = self._loader.construct_object(node, deep=True)
        self.binary.extend(_bytes_in(value))
        if shared:
            self._built[key] = value
        return value

    def _mapping(self, node: yaml.MappingNode, shared: bool) -> dict[str, Any]:
        mapping: dict[str, Any] = {}
        if shared:
            self._built[id(node)] = mapping
        keys: dict[str, yaml.Node] = {}
        for key, value in node.value:
            first = keys.setdefault(key.value, key)
            if first is not key:
                position = Position(key.start_mark.line, key.start_mark.column)
                self.repeated.append(Repeated(key.value, position, first.start_mark.line + 1))
            mapping[key.value] = self.build(value)
        return mapping


def _bytes_in(value: Any) -> Iterable[bytes]:
    """The bytes (!!binary) values in what PyYAML built: a scalar, or a mapping or list it built whole."""
    if isinstance(value, bytes):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _bytes_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _bytes_in(item)


def _locate(document: Any, targets: list[bytes]) -> list[Loc]:
    """The key paths of the `targets` (by identity) in the document: a walk paid only when there are any."""
    wanted = {id(target) for target in targets}
    found: list[Loc] = []
    pending: list[tuple[Loc, Any]] = [((), document)]
    seen: set[int] = set()
    while pending:
        loc, value = pending.pop()
        if id(value) in wanted:
            found.append(loc)
        elif isinstance(value, dict | list) and id(value) not in seen:
            seen.add(id(value))
            children = value.items() if isinstance(value, dict) else enumerate(value)
            pending.extend(((*loc, key), child) for key, child in children)
    return found


class Lines:
    """Finds the 0-based position of a key path in the file.

    The items of a streamed `resources` are known by their starts only: `load` reads the file again to
    keep the nodes of the items whose inner positions are wanted.
    """

    def __init__(self, text: str, root: yaml.Node, streams: list[_Streamed], limits: Limits) -> None:
        self._text = text
        self._limits = limits
        self._root = root
        self._streams = streams
        self._keys: dict[int, dict[str, tuple[yaml.Node, yaml.Node]]] = {}

    def line(self, loc: Loc) -> int | None:
        """The 1-based line of the deepest key or item of `loc` present in the file, if any."""
        position = self.position(loc)
        return None if position is None else position.line + 1

    def position(self, loc: Loc) -> Position | None:
        """The position of the deepest key or item of `loc` present in the file."""
        return self._walk(loc)[0]

    def load(self, locs: Iterable[Loc]) -> None:
        """Make the inner positions of these key paths known: one more reading of the file, if needed."""
        wanted: set[tuple[int, int]] = set()
        for loc in locs:
            stop = self._walk(loc)[1]
            if stop is not None:
                wanted.add(stop)
        if wanted:
            _Reader(self._text, True, lambda _: None, self._keep(wanted), self._limits).read()

    def _keep(self, wanted: set[tuple[int, int]]) -> Callable[[_Streamed, int, yaml.Node], None]:
        def keep(sequence: _Streamed, index: int, node: yaml.Node) -> None:
            if (sequence.ordinal, index) in wanted:
                self._streams[sequence.ordinal].nodes[index] = node

        return keep

    def _walk(self, loc: Loc) -> tuple[Position | None, tuple[int, int] | None]:
        """The position of `loc`, and the streamed item (ordinal, index) whose node it still needs."""
        node = self._root
        if not loc:
            return Position(node.start_mark.line, node.start_mark.column), None
        position: Position | None = None
        for depth, part in enumerate(loc):
            if isinstance(node, _Streamed) and isinstance(part, int):
                if not 0 <= part < len(node.starts):
                    break
                position = node.starts[part]
                if part not in node.nodes:
                    more = depth + 1 < len(loc)
                    return position, (node.ordinal, part) if more else None
                node = node.nodes[part]
                continue
            found = self._child(node, part)
            if found is None:
                break
            mark = found[0].start_mark
            position, node = Position(mark.line, mark.column), found[1]
        return position, None

    def _child(self, node: yaml.Node, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            items: list[yaml.Node] = node.value
            return (items[part], items[part]) if 0 <= part < len(items) else None
        if isinstance(node, yaml.MappingNode):
            keys = self._keys.get(id(node))
            if keys is None:
                keys = self._keys[id(node)] = {str(key.value): (key, value) for key, value in node.value}
            return keys.get(str(part))
        return None
