"""YAML text -> plain JSON-like data, remembering where every key and value was written.

PyYAML composes a node tree whose marks carry 0-based line/column; we build the data from that
tree ourselves so each JSON path ("jobs", 2, "audio") maps to a 1-based (line, col). Dates stay
strings (the schema checks their format), and duplicate keys are reported instead of silently
keeping the last one. libyaml scans and parses when PyYAML has it (a 10,000-job manifest reads
about 3x faster, benchmarks/manifest_parse.py); the nodes are composed in Python through the
same hooks either way, and on any YAML error the text is read again with PyYAML's own reader,
whose messages say what it found rather than only what it expected.

Scalars are read as YAML 1.2 core scalars, not PyYAML's YAML 1.1 ones: `no`, `on`, `yes`,
`off`, `y` and `n` are strings (they are language codes in the localization manifests this
tool exists for), `010` is ten and `1:30` is text. Mapping keys are always their written
text, and the caller can name other paths (portrait and audio names) that are read as text too.

A manifest is untrusted input, so building it is bounded: nesting deeper than `MAX_DEPTH`,
an alias that contains itself, and aliases that expand to far more values than the document
holds (a "billion laughs" bomb: a few hundred bytes that expand to billions of values) are
refused with the line of the offending node. PyYAML shares an aliased node instead of copying
it, but every consumer of the data here (schema validation, settings merging, fingerprinting)
walks it as a tree, so the bound has to hold for the expanded tree. Merge keys (`<<: *base`)
are resolved here too, key by key, rather than by PyYAML's `flatten_mapping`, which copies
the merged pairs into the shared node and so grows exponentially under nested merges.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

JsonPath = tuple[str | int, ...]
Position = tuple[int, int]  # 1-based line, column

# Deeper than any manifest needs (the deepest real path is about 5 levels), far below Python's
# recursion limit for PyYAML's recursive composer and for jsonschema.
MAX_DEPTH = 64
# Aliases may add this many values to a document, plus ALIAS_RATIO values per written node:
# a settings block shared by 10,000 jobs passes, an exponential alias bomb stops at once.
ALIAS_ALLOWANCE = 10_000
ALIAS_RATIO = 10

_MERGE = "tag:yaml.org,2002:merge"
_INT = "tag:yaml.org,2002:int"


class _Bounded:
    """Composer hooks shared by both loaders: YAML 1.2 core integers, a nesting bound, a count
    of the nodes written, and the marks of every alias."""

    def _start(self) -> None:
        self.depth = 0
        self.node_count = 0
        # (id(parent node), key) -> where an alias is written; key is ("i", index) in a
        # sequence, ("k", id(key node)) in a mapping.
        self.alias_marks: dict[tuple[int, tuple[str, int]], yaml.Mark] = {}

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            if parent is not None:
                slot = ("i", index) if isinstance(index, int) else ("k", id(index))
                self.alias_marks[(id(parent), slot)] = self.peek_event().start_mark
            return super().compose_node(parent, index)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Refused(
                f"the YAML is nested more than {MAX_DEPTH} levels deep; a manifest needs a handful",
                self.peek_event().start_mark,
            )
        self.node_count += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_yaml_int(self, node: ScalarNode) -> int:
        """YAML 1.2 core integers: decimal (leading zeros allowed), 0o octal, 0x hexadecimal."""
        text = node.value
        sign = -1 if text.startswith("-") else 1
        digits = text.lstrip("+-")
        if digits.startswith("0o"):
            return sign * int(digits[2:], 8)
        if digits.startswith("0x"):
            return sign * int(digits[2:], 16)
        return sign * int(digits, 10)


class _Loader(_Bounded, yaml.SafeLoader):
    """PyYAML's own pure-Python reader: the reference, and the one whose error messages are
    shown (they say what was found, where libyaml's say only what was expected)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._start()


_FastLoader: type[_Bounded] | None = None
if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _CLoader(_Bounded, Composer, CParser, SafeConstructor, Resolver):
        """libyaml scans and parses (about 20x faster than PyYAML's Python scanner on a large
        manifest); the nodes are still composed in Python, through the same hooks."""

        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)
            self._start()

    _FastLoader = _CLoader

# The YAML 1.2 core schema's implicit tags (https://yaml.org/spec/1.2.2/#1032-tag-resolution),
# in the order they are tried; timestamps are left to the schema (it checks date formats).
_CORE_RESOLVERS = (
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    (_INT, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        list("-+0123456789."),
    ),
    (_MERGE, r"^<<$", ["<"]),
)
for _cls in (_Loader, _FastLoader):
    if _cls is None:
        continue
    _cls.yaml_implicit_resolvers = {}
    for _tag, _pattern, _first in _CORE_RESOLVERS:
        _cls.add_implicit_resolver(_tag, re.compile(_pattern), _first)
    _cls.add_constructor(_INT, _cls.construct_yaml_int)


class _Refused(yaml.MarkedYAMLError):
    """The document is well-formed YAML that this reader will not build (too deep, a bomb)."""

    def __init__(self, message: str, mark: yaml.Mark | None) -> None:
        super().__init__(problem=message, problem_mark=mark)


@dataclass(frozen=True)
class YamlIssue:
    """Something wrong in the YAML itself (syntax, duplicate key)."""

    path: JsonPath
    position: Position | None
    message: str


@dataclass(frozen=True)
class Document:
    data: Any
    values: dict[JsonPath, Position] = field(default_factory=dict)  # where each value starts
    keys: dict[JsonPath, Position] = field(default_factory=dict)  # where each mapping key is written
    issues: tuple[YamlIssue, ...] = ()

    def position(self, path: JsonPath, key: bool = False) -> Position | None:
        """Where `path` is written (its key if `key`), else its nearest written ancestor."""
        if key and path in self.keys:
            return self.keys[path]
        while True:
            if path in self.values:
                return self.values[path]
            if not path:
                return None
            path = path[:-1]


def format_path(path: JsonPath) -> str:
    """("jobs", 2, "audio") -> "jobs[2].audio"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_document(text: str, text_at: Callable[[JsonPath], bool] | None = None) -> Document:
    """Parse one YAML document. A syntax error yields a Document with data None and one issue.

    `text_at(path)` says which values are names or file names: there a plain scalar that YAML
    would read as a number or boolean (`1e3`, `true`) keeps its written text.
    """
    as_text = text_at or (lambda path: False)
    if _FastLoader is not None:
        try:
            return _parse(_FastLoader, text, as_text)
        except _Refused as exc:
            return _refusal(exc)
        except yaml.YAMLError:
            pass  # read it again with PyYAML's reader, whose messages say what it found
    try:
        return _parse(_Loader, text, as_text)
    except _Refused as exc:
        return _refusal(exc)
    except yaml.reader.ReaderError as exc:  # a control character
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        message = f"character U+{exc.character:04X} is not allowed in YAML"
        return Document(None, issues=(YamlIssue((), (line, col), message),))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = (mark.line + 1, mark.column + 1) if mark is not None else None
        what = exc.problem or exc.context or "unreadable YAML"
        if exc.context and exc.problem:
            where = f" (line {exc.context_mark.line + 1})" if exc.context_mark is not None else ""
            what = f"{exc.context}{where}, {exc.problem}"
        message = f"YAML syntax error: {what}"
        return Document(None, issues=(YamlIssue((), position, message),))
    except yaml.YAMLError as exc:
        return Document(None, issues=(YamlIssue((), None, f"YAML error: {exc}"),))


def _parse(loader_class: type[_Bounded], text: str, as_text: Callable[[JsonPath], bool]) -> Document:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Document(None)
        builder = _Builder(loader, as_text)
        data = builder.build(node, (), _mark(node.start_mark), None, 0)
    finally:
        loader.dispose()
    return Document(data, builder.values, builder.keys, tuple(builder.issues))


def _refusal(exc: _Refused) -> Document:
    mark = exc.problem_mark
    position = (mark.line + 1, mark.column + 1) if mark is not None else None
    return Document(None, issues=(YamlIssue((), position, str(exc.problem)),))


def _mark(mark: yaml.Mark) -> Position:
    return mark.line + 1, mark.column + 1


class _Builder:
    """Builds the JSON-like data of a composed node graph, expanding aliases within bounds."""

    def __init__(self, loader: Any, text_at: Callable[[JsonPath], bool]) -> None:
        self.loader = loader
        self.text_at = text_at
        self.values: dict[JsonPath, Position] = {}
        self.keys: dict[JsonPath, Position] = {}
        self.issues: list[YamlIssue] = []
        self.budget = loader.node_count * (1 + ALIAS_RATIO) + ALIAS_ALLOWANCE
        self.built = 0
        self.active: set[int] = set()  # nodes being built: meeting one again is a cycle
        self.pairs_cache: dict[int, list[tuple[str, Node, Node, Node]]] = {}

    def build(
        self, node: Node, path: JsonPath, position: Position, alias: yaml.Mark | None, depth: int
    ) -> Any:
        """`alias`: where the outermost alias being expanded is written (None outside aliases)."""
        self.built += 1
        if self.built > self.budget:
            raise _Refused(
                f"aliases expand to more than {self.budget:,} values, from a document of "
                f"{self.loader.node_count:,}; write the values out or nest fewer aliases",
                alias or node.start_mark,
            )
        if depth > MAX_DEPTH:
            raise _Refused(
                f"aliases nest the data more than {MAX_DEPTH} levels deep; a manifest needs a handful",
                alias or node.start_mark,
            )
        self.values[path] = position
        if isinstance(node, ScalarNode):
            return self.scalar(node, path, position)
        if id(node) in self.active:
            raise _Refused("an alias refers to a node that contains it (a cycle)", alias or node.start_mark)
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [
                    self.build(item, (*path, i), *self.child(node, ("i", i), item, alias), depth + 1)
                    for i, item in enumerate(node.value)
                ]
            mapping: dict[str, Any] = {}
            for key, key_node, value_node, owner in self.pairs(node, path):
                child = (*path, key)
                if owner is node:
                    self.keys[child] = _mark(key_node.start_mark)
                    position_alias = self.child(node, ("k", id(key_node)), value_node, alias)
                else:  # merged in by `<<`: the values are written where the merged mapping is
                    position_alias = self.child(owner, ("k", id(key_node)), value_node, alias)
                mapping[key] = self.build(value_node, child, *position_alias, depth + 1)
            return mapping
        finally:
            self.active.discard(id(node))

    def child(
        self, parent: Node, slot: tuple[str, int], node: Node, alias: yaml.Mark | None
    ) -> tuple[Position, yaml.Mark | None]:
        """Where a child value is written (the alias if it is one) and the outermost alias."""
        mark = self.loader.alias_marks.get((id(parent), slot))
        if mark is None:
            return _mark(node.start_mark), alias
        return _mark(mark), alias or mark

    def pairs(self, node: Node, path: JsonPath) -> list[tuple[str, Node, Node, Node]]:
        """A mapping's (key, key node, value node, owner mapping) with `<<` merges resolved:
        its own keys first, then each merged mapping's keys that are not yet set, in order.
        Duplicate own keys are reported; each mapping is resolved once."""
        if id(node) in self.pairs_cache:
            return self.pairs_cache[id(node)]
        self.pairs_cache[id(node)] = []  # a merge that reaches this mapping again adds nothing
        own: dict[str, tuple[str, Node, Node, Node]] = {}
        merged: list[Node] = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                message = "a key must be a plain name, not a list or mapping"
                self.issues.append(YamlIssue(path, _mark(key_node.start_mark), message))
                continue
            if key_node.tag == _MERGE:
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in sources:
                    if isinstance(source, MappingNode):
                        merged.append(source)
                    else:
                        message = "`<<` merges a mapping or a list of mappings"
                        self.issues.append(YamlIssue(path, _mark(source.start_mark), message))
                continue
            key = key_node.value
            if key in own:
                first = own[key][1].start_mark.line + 1
                message = f"duplicate key {key!r} (first written on line {first})"
                self.issues.append(YamlIssue((*path, key), _mark(key_node.start_mark), message))
                continue
            own[key] = (key, key_node, value_node, node)
        pairs = dict(own)
        for source in merged:
            for pair in self.pairs(source, path):
                self.built += 1
                pairs.setdefault(pair[0], pair)
        if self.built > self.budget:
            raise _Refused(
                f"merge keys expand to more than {self.budget:,} values; write the values out",
                node.start_mark,
            )
        result = list(pairs.values())
        self.pairs_cache[id(node)] = result
        return result

    def scalar(self, node: ScalarNode, path: JsonPath, position: Position) -> Any:
        value = _plain(self.loader.construct_object(node, deep=True))
        if not node.style and isinstance(value, bool | int | float) and self.text_at(path):
            return node.value
        if isinstance(value, float) and not math.isfinite(value):
            self.issues.append(YamlIssue(path, position, f"{node.value} is not a finite number"))
        return value


def _plain(value: Any) -> Any:
    """JSON-compatible scalar: an explicit `!!timestamp` becomes its ISO string, bytes a string."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
