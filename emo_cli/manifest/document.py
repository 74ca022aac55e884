"""YAML text -> plain JSON-like data, remembering where every key and value was written.

PyYAML composes a node tree whose marks carry 0-based line/column; we build the data from that
tree ourselves so each JSON path ("jobs", 2, "audio") maps to a 1-based (line, col). Dates stay
strings (the schema checks their format), and duplicate keys are reported instead of silently
keeping the last one.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

JsonPath = tuple[str | int, ...]
Position = tuple[int, int]  # 1-based line, column

_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _Loader(yaml.SafeLoader):
    """SafeLoader that leaves `2027-01-01` a string: the schema, not YAML, decides what a date is."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


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


def parse_document(text: str) -> Document:
    """Parse one YAML document. A syntax error yields a Document with data None and one issue."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        values: dict[JsonPath, Position] = {}
        keys: dict[JsonPath, Position] = {}
        issues: list[YamlIssue] = []
        data = None if node is None else _build(loader, node, (), values, keys, issues)
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
    finally:
        loader.dispose()
    return Document(data, values, keys, tuple(issues))


def _mark(node: Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(
    loader: _Loader,
    node: Node,
    path: JsonPath,
    values: dict[JsonPath, Position],
    keys: dict[JsonPath, Position],
    issues: list[YamlIssue],
) -> Any:
    values[path] = _mark(node)
    if isinstance(node, MappingNode):
        loader.flatten_mapping(node)  # resolve `<<: *anchor` merge keys
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                issues.append(
                    YamlIssue(path, _mark(key_node), "a key must be a plain name, not a list or mapping")
                )
                continue
            key = loader.construct_object(key_node, deep=True)
            key = _plain(key)
            key = key if isinstance(key, str) else ("null" if key is None else str(key).lower())
            child = (*path, key)
            if key in mapping:
                issues.append(
                    YamlIssue(
                        child,
                        _mark(key_node),
                        f"duplicate key {key!r} (first written on line {keys[child][0]})",
                    )
                )
                continue
            keys[child] = _mark(key_node)
            mapping[key] = _build(loader, value_node, child, values, keys, issues)
        return mapping
    if isinstance(node, SequenceNode):
        return [_build(loader, item, (*path, i), values, keys, issues) for i, item in enumerate(node.value)]
    value = _plain(loader.construct_object(node, deep=True))
    if isinstance(value, float) and not math.isfinite(value):
        issues.append(YamlIssue(path, _mark(node), f"{node.value} is not a finite number"))
    return value


def _plain(value: Any) -> Any:
    """JSON-compatible scalar: an explicit `!!timestamp` becomes its ISO string, bytes a string."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
