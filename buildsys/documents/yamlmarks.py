"""YAML to plain data, keeping the line and column of every key and value.

PyYAML's loaders drop positions and silently keep the last of duplicate keys,
so we compose nodes with the fast C parser and build the data ourselves.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from buildsys.errors import Problem

KeyPath = tuple[str | int, ...]
PROBLEM_MAX = 500  # characters of one problem's message or hint
Pos = tuple[int, int]

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAG = "tag:yaml.org,2002:"
_PLAIN_SCALARS = {_TAG + t for t in ("null", "bool", "int", "float", "str")}
_MAP, _SEQ = _TAG + "map", _TAG + "seq"
# Bounds that turn alias bombs and absurd nesting into a Problem, not a hang or a crash.
MAX_NODES = 100_000
MAX_DEPTH = 64
SHOWN_DEPTH = 4  # a key path cut short in a problem about nesting
_SIMPLE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def dotted(path: KeyPath) -> str:
    """`calibration.inputs.x.resize`, `targets[1].device`; odd keys are quoted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SIMPLE_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out


@dataclass
class Parsed:
    """Data of one YAML file with positions (1-based) of its keys and values."""

    file: str
    data: Any = None
    values: dict[KeyPath, Pos] = field(default_factory=dict)
    keys: dict[KeyPath, Pos] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def at_value(self, path: KeyPath, message: str, hint: str | None = None) -> Problem:
        return self.at(self.values.get(path), path, message, hint)

    def at_key(self, path: KeyPath, message: str, hint: str | None = None) -> Problem:
        return self.at(self.keys.get(path), path, message, hint)

    def at(self, pos: Pos | None, path: KeyPath, message: str, hint: str | None = None) -> Problem:
        line, column = pos or self._nearest_value(path) or (None, None)
        # a problem quotes the user's values; a 100 kB value must not make a 100 kB message
        return Problem(
            self.file, line, column, dotted(path), clip(message, PROBLEM_MAX), hint and clip(hint, PROBLEM_MAX)
        )

    def _nearest_value(self, path: KeyPath) -> Pos | None:
        # A key that is missing from the data is located at its closest existing parent.
        for end in range(len(path), -1, -1):
            if (pos := self.values.get(path[:end])) is not None:
                return pos
        return None


def parse_yaml(text: str, file: str) -> Parsed:
    parsed = Parsed(file)
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        parsed.problems.append(_syntax_problem(exc, file, text))
        return parsed
    except RecursionError:
        parsed.problems.append(Problem(file, None, None, "", "YAML nesting is too deep"))
        return parsed
    if root is None:
        hint = "a recipe needs at least `version`, `source` and `targets`"
        parsed.problems.append(Problem(file, None, None, "", "file is empty", hint))
        return parsed
    parsed.data = _Builder(parsed).build(root, (), 0)
    return parsed


def _syntax_problem(exc: yaml.YAMLError, file: str, text: str) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):
        # No mark, and libyaml's offset counts bytes: find the first such character instead.
        before = text[: text.find(chr(exc.character))] if chr(exc.character) in text else ""
        at = before.count("\n") + 1, len(before) - before.rfind("\n")
        return Problem(file, *at, "", f"YAML error: {exc.reason} (#x{exc.character:04x})")
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None)
    if problem is None:
        return Problem(file, None, None, "", f"YAML error: {str(exc).splitlines()[0]}")
    context = getattr(exc, "context", None)
    message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
    return Problem(file, line, column, "", message)


def pos_of(node: Node) -> Pos:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    """Turns one composed node tree into plain data; lives for one file only."""

    def __init__(self, parsed: Parsed):
        self.parsed = parsed
        self.constructor = SafeConstructor()
        self.budget = MAX_NODES
        self.active: set[int] = set()  # ids of the nodes being built: finds recursive aliases
        self.gave_up = False

    def build(self, node: Node, path: KeyPath, depth: int) -> Any:
        self.parsed.values.setdefault(path, pos_of(node))
        self.budget -= 1
        if self.budget < 0 or depth > MAX_DEPTH or id(node) in self.active:
            return self._give_up(path)
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        self.active.add(id(node))
        try:
            if isinstance(node, MappingNode) and node.tag == _MAP:
                return self._mapping(node, path, depth)
            if isinstance(node, SequenceNode) and node.tag == _SEQ:
                return [self.build(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
            return self._unsupported(node, path)
        finally:
            self.active.discard(id(node))

    def _give_up(self, path: KeyPath) -> None:
        if not self.gave_up:  # once: an alias bomb would otherwise report thousands of times
            message = "document is too large or too deeply nested, or an alias refers to itself"
            pos = self.parsed.values[path]
            self.parsed.problems.append(self.parsed.at(pos, path[:SHOWN_DEPTH], message))
        self.gave_up = True
        return None

    def _scalar(self, node: ScalarNode, path: KeyPath) -> Any:
        if node.tag not in _PLAIN_SCALARS:
            return self._unsupported(node, path)
        try:
            value = SafeConstructor.yaml_constructors[node.tag](self.constructor, node)
            # Messages, JSON and digests write numbers in decimal, which Python refuses
            # beyond 4300 digits (sys.get_int_max_str_digits); 0x/0b literals get past int().
            str(value)
        except (ValueError, KeyError, IndexError):  # KeyError: `!!bool maybe`; IndexError: `!!float ''`
            self.parsed.problems.append(self._unreadable(node, path))
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.parsed.problems.append(self.parsed.at_value(path, f"{node.value} is not a finite number"))
        return value

    def _unreadable(self, node: ScalarNode, path: KeyPath) -> Problem:
        # A literal YAML itself reads as a number can only fail for its size; anything else
        # got its type from an explicit tag (`!!int abc`) that its text does not fit.
        if yaml.resolver.Resolver().resolve(ScalarNode, node.value, (True, False)) == node.tag:
            message = f"a number of {len(node.value)} characters is too large"
            return self.parsed.at_value(path, message, "no setting takes such a number: shorten it")
        text = clip(node.value, 40)
        message = f"'{text}' is not a valid {node.tag.replace(_TAG, '!!')}"
        return self.parsed.at_value(path, message, "remove the tag, or quote the value if it is meant as text")

    def _unsupported(self, node: Node, path: KeyPath) -> None:
        hint: str | None
        if node.tag == _TAG + "merge":
            message, hint = "YAML merge keys (<<) are not supported", "write the keys out"
        else:
            message = f"unsupported YAML value of type {node.tag.replace(_TAG, '!!')}"
            hint = "quote the value if it is meant as text" if isinstance(node, ScalarNode) else None
        self.parsed.problems.append(self.parsed.at(pos_of(node), path, message, hint))
        return None

    def _mapping(self, node: MappingNode, path: KeyPath, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            if key is None:
                continue
            sub = path + (key,)
            if key in out:
                message = f"duplicate key '{key}' (first at line {self.parsed.keys[sub][0]})"
                problem = self.parsed.at(pos_of(key_node), sub, message, "remove one of them")
                self.parsed.problems.append(problem)
                continue
            self.parsed.keys[sub] = pos_of(key_node)
            out[key] = self.build(value_node, sub, depth + 1)
        return out

    def _key(self, node: Node, path: KeyPath) -> str | None:
        if isinstance(node, ScalarNode) and node.tag == _TAG + "str":
            return node.value
        if node.tag == _TAG + "merge":
            self._unsupported(node, path)
            return None
        if isinstance(node, ScalarNode):
            # cut short: the key may be a number of thousands of digits
            shown, where = clip(node.value, 40), path + (node.value,)
        else:
            shown, where = "a " + type(node).__name__.removesuffix("Node").lower(), path
        problem = self.parsed.at(pos_of(node), where, f"keys must be text, got {shown}", "quote the key")
        self.parsed.problems.append(problem)
        return None


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with "..." saying so."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


PLAIN_YAML = re.compile(r"[A-Za-z_/][A-Za-z0-9_./-]*")
YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})


def yaml_text(text: str) -> str:
    """`text` as a YAML scalar to paste: plain when safe, else double-quoted (JSON strings are YAML)."""
    if PLAIN_YAML.fullmatch(text) and text.lower() not in YAML_WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)
