"""People's names compared as a person reads them, never by exact spelling.

Two spellings name the same person when their **skeletons** are equal. A skeleton is the name
as a reader tells it apart from others (in the style of Unicode TR39 section 4, case-
insensitive as the spec allows): NFKC (Django's own username normalisation: fullwidth ``U+FF45``
is ``e``), case-folded (``Reviewer2`` is ``reviewer2``), default-ignorable code points
removed (a soft hyphen or a zero-width space shows as nothing), and every character that is
confusable with another (Cyrillic ``U+0435`` with Latin ``e``, ``0`` with ``O``, ``m`` with
``rn``) replaced by the one prototype of its class, from the Unicode confusables data that
``confusable-homoglyphs`` ships. The steps repeat until nothing changes, so that
``skeleton(skeleton(x)) == skeleton(x)``.

Where it is used: ``same_person`` bars the person an agent acted for (``on_behalf_of``) from
approving — whatever spelling the agent sent; ``check_username_available`` refuses a new or
renamed username whose skeleton is already someone else's, so that two people can never share
one (the admin's forms ask it, and ``refuse_colliding_username`` asks it again before any
user row is saved: the shell, ``createsuperuser``, fixtures).

This module imports nothing of the project's apps (the user model is Django's, looked up
when needed).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any

from django.core.exceptions import ValidationError

# Unicode's Default_Ignorable_Code_Point property, as DerivedCoreProperties.txt lists it
# (Unicode 15.1, unchanged in 16.0): characters a renderer shows as nothing when it has no
# glyph for them. Python's ``unicodedata`` does not expose this property, hence the list.
DEFAULT_IGNORABLE_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x00AD, 0x00AD, "SOFT HYPHEN"),
    (0x034F, 0x034F, "COMBINING GRAPHEME JOINER"),
    (0x061C, 0x061C, "ARABIC LETTER MARK"),
    (0x115F, 0x1160, "HANGUL CHOSEONG FILLER..HANGUL JUNGSEONG FILLER"),
    (0x17B4, 0x17B5, "KHMER VOWEL INHERENT AQ..KHMER VOWEL INHERENT AA"),
    (0x180B, 0x180D, "MONGOLIAN FREE VARIATION SELECTOR ONE..THREE"),
    (0x180E, 0x180E, "MONGOLIAN VOWEL SEPARATOR"),
    (0x180F, 0x180F, "MONGOLIAN FREE VARIATION SELECTOR FOUR"),
    (0x200B, 0x200F, "ZERO WIDTH SPACE..RIGHT-TO-LEFT MARK"),
    (0x202A, 0x202E, "LEFT-TO-RIGHT EMBEDDING..RIGHT-TO-LEFT OVERRIDE"),
    (0x2060, 0x2064, "WORD JOINER..INVISIBLE PLUS"),
    (0x2065, 0x2065, "<reserved-2065>"),
    (0x2066, 0x206F, "LEFT-TO-RIGHT ISOLATE..NOMINAL DIGIT SHAPES"),
    (0x3164, 0x3164, "HANGUL FILLER"),
    (0xFE00, 0xFE0F, "VARIATION SELECTOR-1..VARIATION SELECTOR-16"),
    (0xFEFF, 0xFEFF, "ZERO WIDTH NO-BREAK SPACE"),
    (0xFFA0, 0xFFA0, "HALFWIDTH HANGUL FILLER"),
    (0xFFF0, 0xFFF8, "<reserved-FFF0>..<reserved-FFF8>"),
    (0x1BCA0, 0x1BCA3, "SHORTHAND FORMAT LETTER OVERLAP..SHORTHAND FORMAT UP STEP"),
    (0x1D173, 0x1D17A, "MUSICAL SYMBOL BEGIN BEAM..MUSICAL SYMBOL END PHRASE"),
    (0xE0000, 0xE0000, "<reserved-E0000>"),
    (0xE0001, 0xE0001, "LANGUAGE TAG"),
    (0xE0002, 0xE001F, "<reserved-E0002>..<reserved-E001F>"),
    (0xE0020, 0xE007F, "TAG SPACE..CANCEL TAG"),
    (0xE0080, 0xE00FF, "<reserved-E0080>..<reserved-E00FF>"),
    (0xE0100, 0xE01EF, "VARIATION SELECTOR-17..VARIATION SELECTOR-256"),
    (0xE01F0, 0xE0FFF, "<reserved-E01F0>..<reserved-E0FFF>"),
)

# The bidirectional formatting characters (all of them default-ignorable too): they reorder
# what is shown (LRE..RLO, LRI..PDI) or steer it (LRM, RLM, ALM).
BIDI_CONTROLS = frozenset([0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def _char_class(ranges: Any) -> str:
    return "".join(f"\\U{start:08x}-\\U{end:08x}" for start, end in ranges)


DEFAULT_IGNORABLE = re.compile(
    f"[{_char_class((start, end) for start, end, _ in DEFAULT_IGNORABLE_RANGES)}]"
)
# What the dashboard marks visibly in agent-supplied text (``approvals.templatetags``):
# every default-ignorable code point (which includes every bidi control).
INVISIBLE = DEFAULT_IGNORABLE
# C0 controls, DEL and C1 controls: nothing a name or a key needs.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")

# Rounds of NFKC + case folding + confusable mapping before a name is stable. Every single
# code point is stable after at most 3 (measured over all of Unicode when this was written);
# a name that is still changing after this many is compared by its last form.
_MAX_ROUNDS = 8


def is_default_ignorable(char: str) -> bool:
    """Whether ``char`` (one code point) has Unicode's Default_Ignorable_Code_Point."""
    return DEFAULT_IGNORABLE.fullmatch(char) is not None


@functools.cache
def _prototypes() -> dict[str, str]:
    """Each confusable character → the prototype of its class.

    ``confusable-homoglyphs`` ships Unicode's confusables.txt (``source ; prototype``) as a
    symmetric JSON map — every source lists its prototype and every prototype its sources —
    built line by line in file order. Each class is therefore a star: the prototype is the
    node linked to all others; in a class of two, the source is the key inserted first. (Only
    equality of skeletons matters here, so the choice in a class of two is a nicety.) The
    renderer's left-to-right marks around right-to-left glyphs in that file are dropped."""
    from confusable_homoglyphs.utils import load

    data: dict[str, list[dict[str, str]]] = load("confusables.json")
    order: dict[str, int] = {}
    links: dict[str, set[str]] = {}
    for key, entries in data.items():
        node = key.replace("\u200e", "")
        order.setdefault(node, len(order))
        for entry in entries:
            other = entry["c"].replace("\u200e", "")
            if node and other and node != other:
                links.setdefault(node, set()).add(other)
                links.setdefault(other, set()).add(node)
    prototypes: dict[str, str] = {}
    for node, neighbours in links.items():
        if len(neighbours) != 1:
            continue  # a prototype: its sources map to it
        (other,) = neighbours
        is_source = len(links[other]) > 1 or order.get(node, 0) < order.get(other, 0)
        if is_source and len(node) == 1:
            prototypes[node] = other
    return prototypes


def _round(text: str) -> str:
    prototypes = _prototypes()
    text = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text).casefold())
    text = DEFAULT_IGNORABLE.sub("", text)
    text = "".join(prototypes.get(char, char) for char in text)
    return DEFAULT_IGNORABLE.sub("", text)


@functools.lru_cache(maxsize=8192)
def skeleton(name: str) -> str:
    """The form of ``name`` that two spellings of one name share (see the module docstring):
    NFKC, case-folded, default-ignorables removed, confusables mapped to their prototypes,
    repeated until stable. Pure; ``skeleton(skeleton(x)) == skeleton(x)``."""
    seen = [name]
    current = name
    for _ in range(_MAX_ROUNDS):
        following = _round(current)
        if following == current:
            return current
        if following in seen:  # a cycle (none is known): its least member stands for it
            cycle = seen[seen.index(following) :]
            return min(cycle)
        seen.append(following)
        current = following
    return current


def same_person(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` name the same person: equal skeletons. An empty name (or one
    that is nothing but invisible characters) names nobody and matches nothing."""
    if not a or not b:
        return False
    first = skeleton(a)
    return bool(first) and first == skeleton(b)


def users_matching(name: str) -> list[int]:
    """The ids of every user whose username has the skeleton of ``name`` (the user spelled
    exactly ``name`` included), in id order.

    It reads every username (one query, two columns, streamed): no index can find
    confusable spellings, the people of an Airlock deployment are staff (tens to a few
    thousand), and skeletons are memoised per process. It runs when a username is set or
    changed, never on the gate's or a decision's path (those use ``same_person``)."""
    from django.contrib.auth import get_user_model

    wanted = skeleton(name)
    if not wanted:
        return []
    model = get_user_model()
    rows = (
        model._default_manager.order_by("pk")
        .values_list("pk", model.USERNAME_FIELD)
        .iterator(chunk_size=2000)
    )
    return [pk for pk, username in rows if skeleton(username) == wanted]


USERNAME_TAKEN = (
    "Too much like an existing person's username (letters that look alike, letter case or "
    "invisible characters): choose another."
)


def check_username_available(name: str, user_pk: Any = None) -> None:
    """Refuse (``ValidationError``, code ``username_confusable``) ``name``
    as the username of user ``user_pk`` (None: a new user) when its skeleton is another
    user's, or when it has none. A user keeping the name they have is always fine."""
    if not skeleton(name):
        raise ValidationError("A username needs a visible character.", code="username_empty")
    others = [pk for pk in users_matching(name) if pk != user_pk]
    if not others:
        return
    if user_pk is not None:
        from django.contrib.auth import get_user_model

        model = get_user_model()
        stored = (
            model._default_manager.filter(pk=user_pk)
            .values_list(model.USERNAME_FIELD, flat=True)
            .first()
        )
        if stored == name:
            return  # unchanged: a collision older than this rule is not made worse
    raise ValidationError(USERNAME_TAKEN, code="username_confusable")


def refuse_colliding_username(
    sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any
) -> None:
    """``pre_save`` receiver for the user model (connected in ``accounts.apps``): every path
    that saves a user — forms, ``createsuperuser``, ``create_user`` in a shell, fixtures —
    is refused a username another user's skeleton already has. A save that does not touch
    the username (``update_fields`` without it, e.g. ``last_login`` at each login) costs
    nothing."""
    if update_fields is not None and instance.USERNAME_FIELD not in update_fields:
        return
    check_username_available(instance.get_username(), instance.pk)
