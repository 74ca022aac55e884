"""The manifest JSON Schema: the base file shipped with the package, plus each backend's options.

`schema.json` is the one place that says which keys a manifest may hold and their built-in
defaults. `effective_schema()` splices every installed backend's `options_schema` into the
settings object under the backend's name, so `warp:` and `emo:` sections are checked by the
backend that owns them. `schema_issues()` turns jsonschema's errors into short sentences.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from emo_cli.backends.registry import DEFAULT_BACKEND, backend_names, get_backend_class
from emo_cli.errors import BackendError
from emo_cli.manifest.document import JsonPath

MANIFEST_VERSION = 1
# Portrait and audio names become path components of outputs, so they stay plain
# (the pattern itself lives in schema.json, $defs.name).
NAME_RULE = "may only use letters, digits, '_', '-' and '.', and must start with a letter or digit"
SCHEMA_FILENAME = "emo-manifest.schema.json"


@cache
def _base() -> dict[str, Any]:
    text = resources.files("emo_cli.manifest").joinpath("schema.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    schema["$defs"]["settings"]["properties"]["backend"]["default"] = DEFAULT_BACKEND
    return schema


def base_schema() -> dict[str, Any]:
    """The schema without backend options (a fresh copy each call)."""
    return copy.deepcopy(_base())


def builtin_settings() -> dict[str, Any]:
    """Settings a job gets when neither defaults: nor the job say otherwise."""
    props = _base()["$defs"]["settings"]["properties"]
    return {key: spec["default"] for key, spec in props.items()}


def builtin_default(key: str) -> Any:
    """The default of a top-level manifest key (output_dir, output)."""
    return _base()["properties"][key]["default"]


def effective_schema() -> dict[str, Any]:
    """The base schema with every installed backend's options under settings.<backend name>.

    A backend that is installed but cannot be loaded (its import raises, or its options_schema
    is not a valid JSON Schema) gets a permissive object, so a manifest that does not use it is
    not flagged; using it as a job's backend is reported with the registry's message.
    """
    schema = base_schema()
    props = schema["$defs"]["settings"]["properties"]
    for name in backend_names():
        if name in props:  # a backend may not shadow a core setting
            continue
        try:
            cls = get_backend_class(name)
        except BackendError as exc:
            props[name] = {
                "type": "object",
                "description": f"Options of backend {name!r} (unavailable: {exc}).",
            }
            continue
        section = copy.deepcopy(dict(cls.options_schema))
        section.setdefault("description", f"Options of the {name!r} backend (version {cls.version}).")
        props[name] = section
    return schema


@dataclass(frozen=True)
class SchemaIssue:
    path: JsonPath
    at_key: bool  # point at the key (unknown keys, bad names) rather than the value
    message: str


def schema_issues(data: Any, schema: dict[str, Any]) -> list[SchemaIssue]:
    """Every schema violation in `data`, each as a readable sentence at a JSON path."""
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    issues: list[SchemaIssue] = []
    for error in validator.iter_errors(data):
        issues.extend(_describe(error))
    unique: dict[tuple[JsonPath, str], SchemaIssue] = {}
    for issue in issues:
        unique.setdefault((issue.path, issue.message), issue)
    return list(unique.values())


# YAML 1.1 booleans that YAML 1.2 (and so the manifest reader) takes as strings.
_YAML11_BOOLS = frozenset({"yes", "no", "on", "off", "y", "n"})

_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing",
}


def _describe_value(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({shown!r})"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _expected(types: Any) -> str:
    types = [types] if isinstance(types, str) else list(types)
    words = [_TYPE_WORDS.get(t, t) for t in types]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _describe(error: ValidationError) -> list[SchemaIssue]:
    path: JsonPath = tuple(error.absolute_path)
    kind = error.validator
    value = error.instance
    rule = error.validator_value

    if "propertyNames" in error.relative_schema_path:
        # jsonschema reports a bad mapping key at the mapping; point at the key itself.
        key_path = (*path, str(value))
        if kind == "pattern" and rule == _base()["$defs"]["name"]["pattern"]:
            return [SchemaIssue(key_path, True, f"name {value!r} {NAME_RULE}")]
        return [
            SchemaIssue(key_path, True, f"key {value!r}: {issue.message}") for issue in _describe_plain(error)
        ]
    if kind == "additionalProperties" and rule is False and isinstance(value, dict):
        allowed = sorted(error.schema.get("properties", {}))
        patterns = [re.compile(p) for p in error.schema.get("patternProperties", {})]
        out = []
        for key in value:
            if key in allowed or any(p.search(key) for p in patterns):
                continue
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "allowed: " + ", ".join(allowed)
            out.append(SchemaIssue((*path, key), True, f"unknown key {key!r} ({hint})"))
        return out
    if kind == "required" and isinstance(value, dict):
        missing = [key for key in rule if key not in value]
        if path == () and "version" in missing:
            return [
                SchemaIssue(
                    path, False, f"missing required key 'version' (add `version: {MANIFEST_VERSION}`)"
                )
            ]
        return [SchemaIssue(path, False, f"missing required key {key!r}") for key in missing]
    if kind == "const" and path == ("version",):
        return [
            SchemaIssue(
                path,
                False,
                f"unsupported manifest version {value!r}; this emo-cli reads version {MANIFEST_VERSION}",
            )
        ]
    if kind in ("anyOf", "oneOf"):
        # Explain the branch whose type fits the value (a mapping given for a string-or-mapping
        # gets the mapping's problems); if no branch's type fits, say which types would.
        by_branch: dict[int, list[ValidationError]] = {}
        for sub in error.context or ():
            by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
        wanted: list[str] = []
        for index in range(len(rule)):
            subs = by_branch.get(index, [])
            type_errors = [e for e in subs if e.validator == "type" and not e.relative_path]
            if not type_errors:
                out = [issue for sub in subs for issue in _describe(sub)]
                return out or [SchemaIssue(path, False, error.message)]
            for e in type_errors:
                t = e.validator_value
                wanted.extend([t] if isinstance(t, str) else t)
        return [
            SchemaIssue(
                path,
                False,
                f"expected {_expected(list(dict.fromkeys(wanted)))}, got {_describe_value(value)}",
            )
        ]
    return _describe_plain(error)


def _describe_plain(error: ValidationError) -> list[SchemaIssue]:
    """One sentence for a keyword that needs no look at the rest of the document."""
    path: JsonPath = tuple(error.absolute_path)
    kind = error.validator
    value = error.instance
    rule = error.validator_value
    if kind == "type":
        hint = ""
        if "boolean" in ([rule] if isinstance(rule, str) else rule) and str(value).lower() in _YAML11_BOOLS:
            hint = " (manifests are YAML 1.2, where yes/no/on/off are text: write true or false)"
        return [SchemaIssue(path, False, f"expected {_expected(rule)}, got {_describe_value(value)}{hint}")]
    sentences = {
        "const": lambda: f"must be {rule!r}, got {value!r}",
        "enum": lambda: f"must be one of {', '.join(repr(v) for v in rule)}; got {value!r}",
        "minimum": lambda: f"must be at least {rule}, got {value}",
        "maximum": lambda: f"must be at most {rule}, got {value}",
        "exclusiveMinimum": lambda: f"must be greater than {rule}, got {value}",
        "exclusiveMaximum": lambda: f"must be less than {rule}, got {value}",
        "multipleOf": lambda: f"must be a multiple of {rule}, got {value}",
        "minLength": lambda: "must not be empty" if rule == 1 else f"must be at least {rule} characters long",
        "maxLength": lambda: f"must be at most {rule} characters long",
        "minItems": lambda: (
            "must list at least one item" if rule == 1 else f"must list at least {rule} items"
        ),
        "maxItems": lambda: f"must list at most {rule} items",
        "uniqueItems": lambda: f"lists {_first_duplicate(value)!r} more than once",
        "pattern": lambda: f"{value!r} does not match the pattern {rule}",
        "format": lambda: (
            f"{value!r} is not a valid {rule}" + (" (use YYYY-MM-DD)" if rule == "date" else "")
        ),
    }
    if kind in sentences:
        return [SchemaIssue(path, False, sentences[kind]())]
    return [SchemaIssue(path, False, error.message)]


def _first_duplicate(items: list[Any]) -> Any:
    seen: list[Any] = []
    for item in items:
        if item in seen:
            return item
        seen.append(item)
    return None
