"""The values of a multi-valued attribute (emails, members) while a PATCH applies:
value filters evaluated on them (`emails[type eq "work"]`, `members[value eq "id"]`),
and an ordered index of them by `value`.

The index is what keeps one PATCH linear: an IdP may send a thousand
`members[value eq "id"]` operations for a group of forty thousand, and each one
is a look-up here instead of a pass over every member.
"""
from __future__ import annotations

from collections.abc import Iterator

from scim2_models.path import AttrPath, CompareOperator, Comparison, LogicalExpr, LogicalOperator, Not, Present

from app.scim.errors import invalid_path


# --- value filters ---------------------------------------------------------------------------------

def matches(item: dict, node) -> bool:
    if isinstance(node, LogicalExpr):
        results = (matches(item, term) for term in node.terms)
        return all(results) if node.op == LogicalOperator.and_ else any(results)
    if isinstance(node, Not):
        return not matches(item, node.expr)
    if isinstance(node, Present):
        return _item_value(item, node.attr_path) not in (None, "", [])
    if isinstance(node, Comparison):
        return _compare(_item_value(item, node.attr_path), node.op, node.value)
    raise invalid_path(f"Unsupported expression in a value filter: {node}")


def _item_value(item: dict, path: AttrPath):
    wanted = path.attr.lower()
    return next((v for k, v in item.items() if k.lower() == wanted), None)


def _compare(actual, op: CompareOperator, expected) -> bool:
    if isinstance(expected, str) and isinstance(actual, bool):
        expected = {"true": True, "false": False}.get(expected.lower(), expected)
    if isinstance(actual, bool) or isinstance(expected, bool) or expected is None:
        equal = actual == expected
        return equal if op == CompareOperator.eq else (not equal if op == CompareOperator.ne else False)
    if actual is None:
        return op == CompareOperator.ne
    a, b = str(actual).lower(), str(expected).lower()
    return {CompareOperator.eq: a == b, CompareOperator.ne: a != b, CompareOperator.co: b in a,
            CompareOperator.sw: a.startswith(b), CompareOperator.ew: a.endswith(b), CompareOperator.gt: a > b,
            CompareOperator.ge: a >= b, CompareOperator.lt: a < b, CompareOperator.le: a <= b}[op]


def equalities(node) -> dict | None:
    """`type eq "work"` (and conjunctions of such) → {"type": "work"}: the value to create when none matches."""
    if isinstance(node, Comparison) and node.op == CompareOperator.eq:
        return {node.attr_path.attr: node.value}
    if isinstance(node, LogicalExpr) and node.op == LogicalOperator.and_:
        out = {}
        for term in node.terms:
            part = equalities(term)
            if part is None:
                return None
            out.update(part)
        return out
    return None


def _value_equal_to(node) -> str | None:
    """The key to look up for `value eq "x"`; None for any other filter (those scan)."""
    if not isinstance(node, Comparison) or node.op != CompareOperator.eq:
        return None
    path, expected = node.attr_path, node.value
    if path.uri or path.sub_attr or path.attr.lower() != "value":
        return None
    if isinstance(expected, bool) or not isinstance(expected, (str, int, float)):
        return None
    return str(expected).lower()


# --- the values ------------------------------------------------------------------------------------

def value_key(item: dict) -> str:
    """How values are told apart (`members` added twice, Entra's remove with a value list)."""
    return str(item.get("value")).lower()


class Values:
    """A multi-valued attribute's values in order, indexed by `value_key`.

    Items are the document's own dicts, changed in place (the PATCH works on a
    copy); whoever changes an item's `value` calls `reindex`.
    """

    def __init__(self, items: list):
        self._items: dict[int, dict] = {}   # serial → item; serials grow, so this is the order
        self._keys: dict[int, str] = {}      # serial → its key when last indexed
        self._by_key: dict[str, dict[int, None]] = {}
        self._next = 0
        for item in items:
            self.append(item)

    def __iter__(self) -> Iterator[tuple[int, dict]]:
        return iter(list(self._items.items()))

    def to_list(self) -> list[dict]:
        return list(self._items.values())

    def has(self, key: str) -> bool:
        return key in self._by_key

    def append(self, item: dict) -> int:
        serial, self._next = self._next, self._next + 1
        self._items[serial] = item
        self._index(serial, item)
        return serial

    def discard(self, serial: int) -> None:
        self._unindex(serial)
        del self._items[serial]

    def discard_key(self, key: str) -> None:
        for serial in list(self._by_key.get(key, ())):
            self.discard(serial)

    def clear(self) -> None:
        self._items.clear()
        self._keys.clear()
        self._by_key.clear()

    def reindex(self, serial: int) -> None:
        if self._keys.get(serial) != value_key(self._items[serial]):
            self._unindex(serial)
            self._index(serial, self._items[serial])

    def matching(self, node) -> list[tuple[int, dict]]:
        """The values a filter selects, in order (all of them without one)."""
        if node is None:
            return list(self._items.items())
        key = _value_equal_to(node)
        if key is None:
            return [(serial, item) for serial, item in self._items.items() if matches(item, node)]
        # The index narrows; `matches` still decides, so the answer is the scan's.
        return [(serial, self._items[serial]) for serial in sorted(self._by_key.get(key, ()))
                if matches(self._items[serial], node)]

    def _index(self, serial: int, item: dict) -> None:
        key = self._keys[serial] = value_key(item)
        self._by_key.setdefault(key, {})[serial] = None

    def _unindex(self, serial: int) -> None:
        key = self._keys.pop(serial)
        bucket = self._by_key[key]
        del bucket[serial]
        if not bucket:
            del self._by_key[key]
