"""YAML loading that remembers where every value came from, for file:line error messages.

Configuration files come from people and from other tools, so reading one is bounded: the file's
size, its nesting depth and the number of nodes after alias expansion are checked on the event
stream (which libyaml produces without recursion) before any node is built, so an alias bomb or a
``[[[[...`` file is refused at once instead of taking seconds and gigabytes, or a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import yaml

from ..errors import UsageError

Location = Tuple[Any, ...]

MAX_CONFIG_BYTES = 1 << 20  # a devices file or suite is a few kB; 1 MiB leaves room for comments
MAX_DEPTH = 64  # nesting of mappings and sequences; the schemas need fewer than 10
MAX_NODES = 10_000  # values after alias expansion: a 100-device file has ~3000; a billion-laughs file 10^9
MAX_REPORTED = 20  # validation problems listed; the rest are counted
MAX_NUMBER_CHARS = 64  # a plain number longer than this is an accident (Python refuses 4300 digits)

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: same rules, faster


class ConfigError(UsageError, ValueError):
    """A configuration file is wrong; the message names the file, the line and the field."""


def _walk(node: yaml.Node, path: Location, lines: Dict[Location, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            if not isinstance(key, str):
                continue  # a collection as a key: the constructor has refused it already
            lines[path + (key,)] = key_node.start_mark.line + 1
            _walk(value_node, path + (key,), lines)
            # the key's own line is more helpful than the value's for a scalar value
            lines[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, path + (index,), lines)


def _check_shape(path: Path, text: str) -> None:
    """Refuse deep nesting, self-referencing aliases, alias expansion past MAX_NODES and
    overlong numbers, from the event stream alone (no recursion, no nodes built)."""
    loader = _Loader(text)
    try:
        open_anchors: List[Any] = []  # per open collection: its anchor (or None)
        starts: List[int] = []  # per open collection: the expanded count when it opened
        sizes: Dict[str, int] = {}  # anchor -> number of values it expands to
        expanded = 0
        while True:
            event = loader.get_event()
            if event is None or isinstance(event, yaml.StreamEndEvent):
                return
            line = event.start_mark.line + 1 if event.start_mark is not None else 0
            if isinstance(event, yaml.AliasEvent):
                if event.anchor in open_anchors:
                    raise ConfigError("%s:%d: alias *%s refers to a value that contains it (a cycle)"
                                      % (path, line, event.anchor))
                expanded += sizes.get(event.anchor, 1)
            elif isinstance(event, yaml.ScalarEvent):
                expanded += 1
                if event.anchor is not None:
                    sizes[event.anchor] = 1
                if event.implicit[0] and len(event.value) > MAX_NUMBER_CHARS:
                    tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
                    if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
                        raise ConfigError("%s:%d: a number of %d characters; numbers here have at most %d "
                                          "(quote it if it is text)" % (path, line, len(event.value),
                                                                         MAX_NUMBER_CHARS))
            elif isinstance(event, yaml.CollectionStartEvent):
                if len(starts) >= MAX_DEPTH:
                    raise ConfigError("%s:%d: nested more than %d levels deep" % (path, line, MAX_DEPTH))
                expanded += 1
                open_anchors.append(event.anchor)
                starts.append(expanded)
            elif isinstance(event, yaml.CollectionEndEvent) and starts:
                anchor, start = open_anchors.pop(), starts.pop()
                if anchor is not None:
                    sizes[anchor] = expanded - start + 1
            if expanded > MAX_NODES:
                raise ConfigError("%s:%d: more than %d values (aliases expanded): too large for a "
                                  "configuration file (an alias bomb?)" % (path, line, MAX_NODES))
    finally:
        loader.dispose()


def _read_text(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("%s: file not found" % path) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise ConfigError("%s: cannot read: %s" % (path, exc)) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError("%s: larger than %d bytes; this is not a configuration file" % (path, MAX_CONFIG_BYTES))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("%s:%d: not UTF-8 text (byte 0x%02x at offset %d)"
                          % (path, line, raw[exc.start], exc.start)) from None


def load_yaml(path: Path) -> Tuple[Any, Dict[Location, int]]:
    """Parse ``path``; return the data and a map from a key path to its 1-based line number.

    Every problem is a ConfigError naming the file and, where known, the line."""
    text = _read_text(path)
    try:
        _check_shape(path, text)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise ConfigError(
            "%s:%d: invalid YAML: %s" % (path, line, exc.problem or exc.context or exc)
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError("%s: invalid YAML: %s" % (path, " ".join(str(exc).split()))) from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a timestamp 2024-13-45
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError("%s: a value YAML cannot build: %s" % (path, exc)) from None
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
    problems = exc.errors()
    for err in problems[:MAX_REPORTED]:
        loc = prefix + tuple(err["loc"])
        field = ".".join(str(part) for part in loc) or "(top level)"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "value_error":
            message = message.replace("Value error, ", "", 1)
        out.append("%s:%d: %s: %s" % (path, line_of(lines, loc), field, message))
    if len(problems) > MAX_REPORTED:
        out.append("%s: ... and %d more problem(s)" % (path, len(problems) - MAX_REPORTED))
    return "\n".join(out)
