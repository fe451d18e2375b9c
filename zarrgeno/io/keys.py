"""The one rule for a store key: a relative POSIX path that stays inside the store.

Keys reach zarrgeno from directory walks, zip entry names, HTTP listings and ``.zmetadata``,
and some of them become file paths in a target (``rechunk``, ``recompress``, ``download``).
A key such as ``../victim`` or ``/etc/x`` would then read, replace or delete files outside
it, and an empty segment (``/abs`` lists as a child named ``""``, which is its own parent)
sends a walk round in circles. Every source of keys checks them here, so that a store
holding one such key is refused by name before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from zarrgeno.errors import BadDataError

_DRIVE = re.compile(r"[A-Za-z]:")
#: What a safe key is, for messages.
RULE = "a store key must be a relative path inside the store"


def key_problem(key: str) -> str | None:
    """Why ``key`` is not a safe store key, or None when it is one.

    A safe key is a relative POSIX path: ``/``-separated segments, none empty, ``.`` or
    ``..``; not absolute; no backslash, no NUL character and no drive letter (``C:``).

    >>> key_problem("2L/calldata/GT/0.0.0") is None
    True
    >>> key_problem("../victim")
    "it has a '..' segment"
    >>> key_problem("2L//x")
    'it has an empty segment'
    """
    if not key:
        return "it is empty"
    if "\x00" in key:
        return "it holds a NUL character"
    if "\\" in key:
        return "it holds a backslash"
    if key.startswith("/"):
        return "it is an absolute path"
    if _DRIVE.match(key):
        return "it starts with a drive letter"
    for segment in key.split("/"):
        if not segment:
            return "it has an empty segment"
        if segment in (".", ".."):
            return f"it has a {segment!r} segment"
    return None


def unsafe_key(where: str, key: str, problem: str, *, what: str = "key") -> BadDataError:
    """The error that refuses a store (named ``where``) for holding ``key``."""
    return BadDataError(f"{where}: unsafe {what} {key!r}: {problem} ({RULE})")


def check_key(key: str, where: str, *, what: str = "key") -> str:
    """Return ``key`` when it is safe, else raise :class:`BadDataError` naming ``where``.

    >>> check_key("2L/.zarray", "store.zarr")
    '2L/.zarray'
    >>> check_key("/abs", "store.zip", what="zip entry")
    Traceback (most recent call last):
    zarrgeno.errors.BadDataError: store.zip: unsafe zip entry '/abs': it is an absolute path \
(a store key must be a relative path inside the store)
    """
    problem = key_problem(key)
    if problem is not None:
        raise unsafe_key(where, key, problem, what=what)
    return key


def parent_dirs(key: str) -> list[str]:
    """The directories above ``key``, outermost first.

    >>> parent_dirs("2L/calldata/GT/0.0.0")
    ['2L', '2L/calldata', '2L/calldata/GT']
    """
    parts = key.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def check_tree(keys: Iterable[str], where: str, *, what: str = "key") -> set[str]:
    """Check every key of a store that names its keys itself (a zip's entries, a listing).

    Each key must be safe (:func:`check_key`), and none may be the directory of another
    (``a`` and ``a/b``): written out, one would replace the other. Returns the keys as a set.
    """
    seen = {check_key(key, where, what=what) for key in keys}
    clashes = sorted({d for key in seen for d in parent_dirs(key)} & seen)
    if clashes:
        raise BadDataError(
            f"{where}: {what} {clashes[0]!r} is both a file and the directory of other "
            f"{what}s (corrupt or hostile)"
        )
    return seen
