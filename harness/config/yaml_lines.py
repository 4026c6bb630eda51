"""YAML loading that remembers where every value came from, for file:line error messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

import yaml

from ..errors import UsageError

Location = Tuple[Any, ...]


class ConfigError(UsageError, ValueError):
    """A configuration file is wrong; the message names the file, the line and the field."""


def _walk(node: yaml.Node, path: Location, lines: Dict[Location, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[path + (key,)] = key_node.start_mark.line + 1
            _walk(value_node, path + (key,), lines)
            # the key's own line is more helpful than the value's for a scalar value
            lines[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, path + (index,), lines)


def load_yaml(path: Path) -> Tuple[Any, Dict[Location, int]]:
    """Parse ``path``; return the data and a map from a key path to its 1-based line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("%s: file not found" % path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("%s: cannot read: %s" % (path, exc)) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise ConfigError(
            "%s:%d: invalid YAML: %s" % (path, line, exc.problem or exc.context or exc)
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError("%s: invalid YAML: %s" % (path, exc)) from None
    lines: Dict[Location, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return data, lines


def line_of(lines: Dict[Location, int], loc: Location) -> int:
    """The line of the deepest known prefix of ``loc`` (pydantic locations may go deeper)."""
    loc = tuple(loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get((), 1)


def format_validation_error(path: Path, exc: Any, lines: Dict[Location, int], prefix: Location = ()) -> str:
    """Turn a pydantic ValidationError into one 'file:line: field: message' line per problem."""
    out = []
    for err in exc.errors():
        loc = prefix + tuple(err["loc"])
        field = ".".join(str(part) for part in loc) or "(top level)"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        out.append("%s:%d: %s: %s" % (path, line_of(lines, loc), field, message))
    return "\n".join(out)
