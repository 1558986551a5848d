"""JSON parsing for untrusted bodies: bounded nesting, finite numbers only, text that can be
stored and shown faithfully, clean 400s."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from core.identity import CONTROL, DEFAULT_IGNORABLE

MAX_DEPTH = 32
# Text a reviewer would not see as it is: bidirectional embeddings, overrides and isolates
# (U+202A to U+202E, U+2066 to U+2069) reorder what is shown ("Trojan Source"), and invisible
# separators (zero-width space U+200B, word joiner U+2060, zero-width no-break space U+FEFF)
# hide a difference between two strings that look alike — in a system where a person
# approves what they read, both are refused. Zero-width (non-)joiners and the LRM/RLM marks
# stay allowed: emoji sequences and several scripts need them, and they cannot reorder text.
# NUL cannot be stored by PostgreSQL; a lone UTF-16 surrogate (``"\ud800"``) is not text.
_REFUSED_CHARACTERS = re.compile("[\x00\u202a-\u202e\u2066-\u2069\u200b\u2060\ufeff\ud800-\udfff]")
# Names and keys are compared, looked up and shown without the context a sentence gives, so
# they are held to more: no default-ignorable code point at all (soft hyphen, ZWJ/ZWNJ,
# LRM/RLM/ALM, variation selectors, tags — ``core.identity.DEFAULT_IGNORABLE_RANGES``) and
# no control character. This applies to every object key anywhere in a body, and to the
# top-level string fields a view names in ``identifier_fields`` (e.g. ``on_behalf_of``).


class InvalidText(ParseError):
    """A body whose text is refused: ``400 invalid_text`` with the fields named (rendered by
    ``core.api_errors``)."""

    error_code = "invalid_text"

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__(
            "Text may not contain NUL, unpaired surrogates, bidirectional overrides or "
            "invisible separators; names and keys may not contain any invisible (default-"
            "ignorable) or control character."
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


def identifier_problem(text: str) -> str | None:
    """Why ``text`` is refused as a name or a key (see above), or None."""
    if problem := text_problem(text):
        return problem
    found = DEFAULT_IGNORABLE.search(text) or CONTROL.search(text)
    if found is None:
        return None
    return (
        f"Contains U+{ord(found.group()):04X}, an invisible or control character, which is "
        "not allowed in a name or key."
    )


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _printable(path: str) -> str:
    """A field path safe to echo back: refused characters as escapes."""
    path = _REFUSED_CHARACTERS.sub(_escape, path)
    return CONTROL.sub(_escape, DEFAULT_IGNORABLE.sub(_escape, path))


def _check(
    value: Any, limit: int, identifier_fields: frozenset[str] = frozenset()
) -> tuple[int, dict[str, list[str]]]:
    """Nesting depth of ``value`` (iteratively: no recursion to exhaust) and the refused text
    in its keys and strings, by path (``arguments.to``, ``evidence[2].title``). Keys, and the
    top-level strings named in ``identifier_fields``, follow the rule for names."""
    deepest = 0
    problems: dict[str, list[str]] = {}
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            check = identifier_problem if path in identifier_fields else text_problem
            if problem := check(item):
                problems.setdefault(_printable(path) or "(body)", []).append(problem)
        elif isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest, problems
            if isinstance(item, dict):
                for key, child in item.items():
                    child_path = f"{path}.{key}" if path else key
                    if problem := identifier_problem(key):
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
    Nothing is parsed halfway: the view never sees such a body. A view's
    ``identifier_fields`` (top-level field names) are held to the rule for names."""

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
        view = (parser_context or {}).get("view")
        identifier_fields = frozenset(getattr(view, "identifier_fields", ()))
        depth, problems = _check(data, MAX_DEPTH, identifier_fields)
        if depth > MAX_DEPTH:
            raise ParseError(f"JSON nested deeper than {MAX_DEPTH} levels.")
        if problems:
            raise InvalidText(problems)
        return data
