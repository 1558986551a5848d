"""JSON parsing for untrusted bodies: bounded nesting, finite numbers only, text that can be
stored and shown faithfully, clean 400s."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 32
# Text a reviewer would not see as it is: bidirectional embeddings, overrides and isolates
# (U+202A to U+202E, U+2066 to U+2069) reorder what is shown ("Trojan Source"), and invisible
# separators (zero-width space U+200B, word joiner U+2060, zero-width no-break space U+FEFF)
# hide a difference between two strings that look alike — in a system where a person
# approves what they read, both are refused. Zero-width (non-)joiners and the LRM/RLM marks
# stay allowed: emoji sequences and several scripts need them, and they cannot reorder text.
# NUL cannot be stored by PostgreSQL; a lone UTF-16 surrogate (``"\ud800"``) is not text.
_REFUSED_CHARACTERS = re.compile("[\x00\u202a-\u202e\u2066-\u2069\u200b\u2060\ufeff\ud800-\udfff]")


class InvalidText(ParseError):
    """A body whose text is refused: ``400 invalid_text`` with the fields named (rendered by
    ``config.api_errors``)."""

    error_code = "invalid_text"

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__(
            "Text may not contain NUL, unpaired surrogates, bidirectional overrides or "
            "invisible separators."
        )
        self.fields = fields


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def text_problem(text: str) -> str | None:
    """Why ``text`` is refused (see ``_REFUSED_CHARACTERS``), or None."""
    found = _REFUSED_CHARACTERS.search(text)
    if found is None:
        return None
    return f"Contains U+{ord(found.group()):04X}, which is not allowed in text."


def _printable(path: str) -> str:
    """A field path safe to echo back: refused characters as escapes."""
    return _REFUSED_CHARACTERS.sub(lambda m: f"\\u{ord(m.group()):04x}", path)


def _check(value: Any, limit: int) -> tuple[int, dict[str, list[str]]]:
    """Nesting depth of ``value`` (iteratively: no recursion to exhaust) and the refused text
    in its keys and strings, by path (``arguments.to``, ``evidence[2].title``)."""
    deepest = 0
    problems: dict[str, list[str]] = {}
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            if problem := text_problem(item):
                problems.setdefault(_printable(path) or "(body)", []).append(problem)
        elif isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest, problems
            if isinstance(item, dict):
                for key, child in item.items():
                    child_path = f"{path}.{key}" if path else key
                    if problem := text_problem(key):
                        problems.setdefault(_printable(child_path), []).append(
                            f"Field name: {problem}"
                        )
                    stack.append((child, depth + 1, child_path))
            else:
                stack.extend((child, depth + 1, f"{path}[{i}]") for i, child in enumerate(item))
    return deepest, problems


class SafeJSONParser(JSONParser):
    """DRF's JSON parser for bodies nobody vouches for: invalid UTF-8, NaN/Infinity, numbers
    out of range and nesting deeper than ``MAX_DEPTH`` answer ``400 malformed_json``;
    refused characters in any key or string answer ``400 invalid_text`` naming the fields.
    Nothing is parsed halfway: the view never sees such a body."""

    def parse(
        self, stream: Any, media_type: str | None = None, parser_context: dict | None = None
    ) -> Any:
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError("The body is not valid UTF-8.") from exc
        try:
            data = json.loads(text, parse_float=_finite_float, parse_constant=_reject_constant)
        except RecursionError as exc:
            raise ParseError(f"JSON nested deeper than {MAX_DEPTH} levels.") from exc
        except ValueError as exc:
            raise ParseError(f"Malformed JSON: {exc}") from exc
        depth, problems = _check(data, MAX_DEPTH)
        if depth > MAX_DEPTH:
            raise ParseError(f"JSON nested deeper than {MAX_DEPTH} levels.")
        if problems:
            raise InvalidText(problems)
        return data
