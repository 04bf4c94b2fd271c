"""Read-only dicts and lists for the parts of an answer that answers share.

Citation locators and what follows from a set of verdicts (triage.Decision) are built once and then reused
by every answer that needs them. If any caller changed one in place, later patients would get that
change. So a shared part refuses changes with TypeError. It still compares, encodes (orjson, json)
and reads like a plain dict or list, and a copy (copy.deepcopy, pickle) is a plain, changeable one.
"""

from __future__ import annotations

from typing import Any, NoReturn

READ_ONLY = "this part of the answer is shared with other answers: copy it (copy.deepcopy) to change it"


def _refuse(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
    raise TypeError(READ_ONLY)


class FrozenDict(dict):
    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple[type, tuple[dict]]:
        return (dict, (dict(self),))


class FrozenList(list):
    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse

    def __reduce__(self) -> tuple[type, tuple[list]]:
        return (list, (list(self),))


def freeze(value: Any) -> Any:
    """A deep read-only version of plain JSON-like data."""
    if isinstance(value, dict):
        return value if type(value) is FrozenDict else FrozenDict((k, freeze(v)) for k, v in value.items())
    if isinstance(value, list):
        return value if type(value) is FrozenList else FrozenList(freeze(v) for v in value)
    return value
