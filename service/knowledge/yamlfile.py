"""YAML for data files: the one way the service and its tools read them.

A key written twice is an error, not a silent override. Problems name the file, the path inside it
(`rules[12].then.level`) and the line, never a snippet of the text: an API-key or trust file may hold
hashes or secrets, and PyYAML's own messages quote the offending line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PathPart = str | int
_MERGE = "tag:yaml.org,2002:merge"
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class DataFileError(ValueError):
    """A data file cannot be read or parsed; `problems` holds one line per problem, each naming the file."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping holds the same key twice. Its text is the path and the two lines, without the file's text."""

    def __init__(self, path: str, first: yaml.Mark, again: yaml.Mark):
        super().__init__(None, None, f"duplicate key (lines {first.line + 1} and {again.line + 1})", again)
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass(frozen=True)
class Document:
    """A parsed file and the line each node starts on, by its path, to point problems at lines."""

    data: Any
    lines: dict[tuple[PathPart, ...], int] = field(default_factory=dict)

    def line(self, path: Sequence[PathPart]) -> int | None:
        """The line of the node at `path`, or of its nearest ancestor in the file (a missing key's parent)."""
        parts = tuple(path)
        while parts not in self.lines and parts:
            parts = parts[:-1]
        return self.lines.get(parts)


def yaml_path(parts: Sequence[PathPart]) -> str:
    """`rules[12].then.level`; keys that are not plain words are quoted: `citations['000.seek.saddle']`."""
    out = ""
    for part in parts:
        if isinstance(part, str) and _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def parse_yaml(text: str | bytes) -> Document:
    """Like yaml.safe_load, but rejects duplicate keys (and recursive aliases) and records node lines."""
    loader = yaml.CSafeLoader(text)  # libyaml: the same nodes and marks, several times faster
    lines: dict[tuple[PathPart, ...], int] = {}
    walking: dict[int, bool] = {}  # id(node): True while it is walked, False once it has been

    def walk(node: yaml.Node, path: tuple[PathPart, ...]) -> None:
        # Before construction, so that a duplicate is reported with its path. A recursive alias (which
        # would make the schema checks and the knowledge hash loop) is refused; a node reached again
        # through an alias is not walked twice, so nested aliases cannot blow up the walk.
        lines.setdefault(path, node.start_mark.line + 1)
        if id(node) in walking:
            if walking[id(node)]:
                raise yaml.constructor.ConstructorError(None, None, "recursive alias", node.start_mark)
            return
        walking[id(node)] = True
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))
        elif isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE:
                    walk(value_node, path)  # merged keys belong to this mapping
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    continue  # a list or mapping as a key: the constructor refuses it as unhashable
                key = loader.construct_object(key_node)  # `yes` and `true`, `1` and `0x1` are the same key
                part = key if isinstance(key, (str, int)) and not isinstance(key, bool) else key_node.value
                if key in seen:
                    raise DuplicateKeyError(yaml_path((*path, part)), seen[key].start_mark, key_node.start_mark)
                seen[key] = key_node
                lines.setdefault((*path, part), key_node.start_mark.line + 1)  # the key's line, not its block's
                walk(value_node, (*path, part))
        walking[id(node)] = False

    try:
        node = loader.get_single_node()
        if node is None:
            return Document(None, {(): 1})
        walk(node, ())
        return Document(loader.construct_document(node), lines)
    finally:
        loader.dispose()


def load_yaml(text: str | bytes) -> Any:
    """Like yaml.safe_load, but rejects duplicate keys."""
    return parse_yaml(text).data


def yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong and where (path or line), without quoting the text as str(exc) does."""
    if isinstance(exc, DuplicateKeyError):
        return str(exc)
    if isinstance(exc, yaml.reader.ReaderError):
        return f"not UTF-8 text (byte {exc.position})"
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return f"{where}not valid YAML ({getattr(exc, 'problem', None) or 'parse error'})"


def read_yaml(path: Path | str, name: str | None = None) -> Document:
    """The YAML file at `path`; DataFileError naming the file (`name`, default the path) if it cannot be read."""
    name = name or str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise DataFileError([f"{name}: cannot be read ({exc.strerror or type(exc).__name__})"]) from None
    try:
        return parse_yaml(raw)
    except yaml.YAMLError as exc:
        raise DataFileError([f"{name}: {yaml_problem(exc)}"]) from None
