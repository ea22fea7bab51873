"""SCIM filters (RFC 7644 §3.4.2.2) turned into SQLAlchemy expressions.

scim2-models parses the filter into an AST; this walks it against an explicit
map of the attributes each resource can be filtered on. An attribute or an
operator the map does not know is a 400 `invalidFilter`, never a match-all,
and nothing is ever filtered in Python. Case-insensitive attributes compare
lower() on both sides and LIKE wildcards in values are escaped, so SQLite and
PostgreSQL answer alike.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable

from scim2_models import ScimFilter
from scim2_models.exceptions import SCIMException
from scim2_models.path import AttrPath, CompareOperator, Comparison, LogicalExpr, LogicalOperator, Not, Present, ValuePath
from sqlalchemy import and_, false, func, not_, or_, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.types import Integer

from app.database import like_escape
from app.scim.errors import invalid_filter

MAX_FILTER_LENGTH = 4096
ORDERING = {CompareOperator.gt, CompareOperator.ge, CompareOperator.lt, CompareOperator.le}


class strpos(GenericFunction):
    """Position of a substring, case-sensitive on both databases (instr on SQLite)."""
    type = Integer()
    inherit_cache = True


@compiles(strpos, "sqlite")
def _strpos_sqlite(element, compiler, **kw):
    return f"instr({compiler.process(element.clauses, **kw)})"


def parse_filter(text: str):
    if len(text) > MAX_FILTER_LENGTH:
        raise invalid_filter(f"The filter is longer than {MAX_FILTER_LENGTH} characters.")
    try:
        return ScimFilter(text).ast
    except SCIMException as exc:
        raise invalid_filter(f"Invalid filter {text[:200]!r}: {exc}") from None


# --- fields: what an attribute path is in SQL -----------------------------------------------------

class Field:
    def compare(self, op: CompareOperator, value: Any):
        raise NotImplementedError

    def present(self):
        raise NotImplementedError


def _refuse(name: str, op: CompareOperator):
    return invalid_filter(f"The {op.value!r} operator cannot be used with {name}.")


@dataclass
class StringField(Field):
    name: str
    column: Any
    case_exact: bool = False
    lowered: bool = False  # the column already holds lowercase text
    nullable: bool = True

    def compare(self, op, value):
        if value is None:
            if op == CompareOperator.eq:
                return self.column.is_(None)
            if op == CompareOperator.ne:
                return self.column.is_not(None)
            raise _refuse(self.name, op)
        if not isinstance(value, str):
            raise invalid_filter(f"{self.name} is a string; compare it with a quoted value.")
        if self.case_exact:
            lhs, rhs = self.column, value
        else:
            lhs = self.column if self.lowered else func.lower(self.column)
            rhs = value.lower()
        if op == CompareOperator.ne:
            return or_(self.column.is_(None), lhs != rhs) if self.nullable else lhs != rhs
        expression = self._positive(op, lhs, rhs)
        return and_(self.column.is_not(None), expression) if self.nullable else expression

    def _positive(self, op, lhs, rhs):
        if op == CompareOperator.eq:
            return lhs == rhs
        if op in ORDERING:
            return {CompareOperator.gt: lhs > rhs, CompareOperator.ge: lhs >= rhs,
                    CompareOperator.lt: lhs < rhs, CompareOperator.le: lhs <= rhs}[op]
        if not self.case_exact:
            pattern = {CompareOperator.co: "%{}%", CompareOperator.sw: "{}%", CompareOperator.ew: "%{}"}[op]
            return lhs.like(pattern.format(like_escape(rhs)), escape="\\")
        # Case-exact substring tests without LIKE (case-insensitive on SQLite).
        if op == CompareOperator.co:
            return strpos(lhs, rhs) > 0
        if op == CompareOperator.sw:
            return func.substr(lhs, 1, len(rhs)) == rhs
        return and_(func.length(lhs) >= len(rhs), func.substr(lhs, func.length(lhs) - len(rhs) + 1) == rhs)

    def present(self):
        return and_(self.column.is_not(None), self.column != "") if self.nullable else self.column != ""


@dataclass
class IdField(Field):
    name: str
    column: Any

    def compare(self, op, value):
        if op not in (CompareOperator.eq, CompareOperator.ne):
            raise _refuse(self.name, op)
        from app.scim.resources import parse_id
        number = parse_id(value) if isinstance(value, (str, int)) else None
        if number is None:  # an id we never issued: nothing equals it
            return false() if op == CompareOperator.eq else true()
        return self.column == number if op == CompareOperator.eq else self.column != number

    def present(self):
        return true()


@dataclass
class BoolField(Field):
    name: str
    when_true: Any  # SQL expression that is true when the attribute is true

    def compare(self, op, value):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"  # Entra sends booleans as strings
        if not isinstance(value, bool):
            raise invalid_filter(f"{self.name} is a boolean; compare it with true or false.")
        if op not in (CompareOperator.eq, CompareOperator.ne):
            raise _refuse(self.name, op)
        positive = value if op == CompareOperator.eq else not value
        return self.when_true if positive else not_(self.when_true)

    def present(self):
        return true()


@dataclass
class DateTimeField(Field):
    name: str
    column: Any

    def compare(self, op, value):
        if op not in ORDERING | {CompareOperator.eq, CompareOperator.ne}:
            raise _refuse(self.name, op)
        when = parse_datetime(value, self.name)
        return {CompareOperator.eq: self.column == when, CompareOperator.ne: self.column != when,
                CompareOperator.gt: self.column > when, CompareOperator.ge: self.column >= when,
                CompareOperator.lt: self.column < when, CompareOperator.le: self.column <= when}[op]

    def present(self):
        return self.column.is_not(None)


def parse_datetime(value, name: str) -> dt.datetime:
    if not isinstance(value, str):
        raise invalid_filter(f"{name} is a dateTime; compare it with a quoted xsd:dateTime.")
    try:
        when = dt.datetime.fromisoformat(value.strip().replace("z", "Z"))
        # In UTC here: an offset that takes it past year 1 or 9999 is refused, not left to the database driver.
        return when.astimezone(dt.timezone.utc) if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    except (ValueError, OverflowError):
        raise invalid_filter(f"{value!r} is not a dateTime like 2026-11-30T12:00:00Z.") from None


@dataclass
class ConstantField(Field):
    """An attribute with one value for every row (emails.type is always "work")."""
    name: str
    value: Any

    def compare(self, op, value):
        mine = self.value
        if isinstance(mine, bool):
            if isinstance(value, str) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            if not isinstance(value, bool) or op not in (CompareOperator.eq, CompareOperator.ne):
                raise invalid_filter(f"{self.name} is a boolean; compare it with eq or ne and true or false.")
            result = (mine == value) == (op == CompareOperator.eq)
            return true() if result else false()
        if not isinstance(value, str):
            raise invalid_filter(f"{self.name} is a string; compare it with a quoted value.")
        a, b = mine.lower(), value.lower()
        result = {CompareOperator.eq: a == b, CompareOperator.ne: a != b, CompareOperator.co: b in a,
                  CompareOperator.sw: a.startswith(b), CompareOperator.ew: a.endswith(b), CompareOperator.gt: a > b,
                  CompareOperator.ge: a >= b, CompareOperator.lt: a < b, CompareOperator.le: a <= b}[op]
        return true() if result else false()

    def present(self):
        return true()


@dataclass
class MultiValued:
    """A multi-valued attribute: its sub-attributes, and how a condition on one of
    its values becomes a condition on the resource (an EXISTS, or the row itself)."""
    fields: dict[str, Field]  # lowercase sub-attribute name -> field
    wrap: Callable[[Any], Any] = lambda condition: condition

    def resolver(self) -> Callable[[AttrPath], Field | None]:
        return lambda path: self.fields.get(path.attr.lower()) if path.sub_attr is None and path.uri is None else None


# --- the translator ------------------------------------------------------------------------------

Resolver = Callable[[AttrPath], "Field | MultiValued | None"]


class FilterTranslator:
    def __init__(self, resolve: Resolver):
        self.resolve = resolve

    def translate(self, text: str):
        return self._node(parse_filter(text), self.resolve)

    def _node(self, node, resolve):
        if isinstance(node, LogicalExpr):
            terms = [self._node(term, resolve) for term in node.terms]
            return and_(*terms) if node.op == LogicalOperator.and_ else or_(*terms)
        if isinstance(node, Not):
            return not_(self._node(node.expr, resolve))
        if isinstance(node, ValuePath):
            target = resolve(node.attr_path)
            if not isinstance(target, MultiValued):
                raise invalid_filter(f"{node.attr_path} is not a multi-valued attribute that can be filtered.")
            return target.wrap(self._node(node.val_filter, target.resolver()))
        if isinstance(node, (Comparison, Present)):
            if isinstance(node, Comparison) and isinstance(node.value, str) and "\x00" in node.value:
                # A \u0000 escape: PostgreSQL text can't hold it (SQLite would compare it).
                raise invalid_filter(f"The value compared with {node.attr_path} contains a NUL character.")
            field, wrap = self._field(node.attr_path, resolve)
            condition = field.present() if isinstance(node, Present) else field.compare(node.op, node.value)
            return wrap(condition)
        raise invalid_filter(f"Unsupported filter expression: {node}")

    def _field(self, path: AttrPath, resolve):
        target = resolve(path)
        if isinstance(target, Field):
            return target, lambda condition: condition
        # `emails.value eq "x"` and `members eq "x"` address a value of a multi-valued attribute.
        if path.sub_attr is not None:
            parent = resolve(AttrPath(attr=path.attr, uri=path.uri))
            if isinstance(parent, MultiValued) and (field := parent.fields.get(path.sub_attr.lower())):
                return field, parent.wrap
        elif isinstance(target, MultiValued) and (field := target.fields.get("value")):
            return field, target.wrap
        raise invalid_filter(f"Unknown or unfilterable attribute {str(path)!r}.")
