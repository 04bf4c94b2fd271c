"""A fast path for request bodies the schema accepts unchanged; marshmallow stays the judge.

marshmallow's load costs about 100 µs for a full exam, most of it framework bookkeeping for a body
that turns out valid. At start-up the request schema is compiled into plain checks. When they
accept a body, the body is what marshmallow would return: same keys, same values, nothing coerced.
When they decline, marshmallow loads the body as before, so every error keeps its exact message.

The compiler is strict about what it understands. A field type, a validator or a hook it doesn't
know stops it at import with an error rather than guessing, and a schema that allows unknown keys
gets no fast path. tests/test_fastpath.py checks the fast path against marshmallow on random bodies,
valid and broken: whatever the checks accept, marshmallow accepts unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate
from marshmallow.decorators import POST_LOAD, PRE_LOAD, VALIDATES, VALIDATES_SCHEMA
from marshmallow.utils import missing

Check = Callable[[Any], bool]


class NoFastPath(TypeError):
    """The schema uses something the compiler does not understand."""


def compile_schema(schema: Schema) -> Check:
    """A predicate that is true only for a body `schema.load` returns unchanged."""
    where = type(schema).__name__
    if schema.unknown != RAISE:
        raise NoFastPath(f"{where}: unknown keys must be refused (unknown = RAISE)")
    for tag in (PRE_LOAD, POST_LOAD, VALIDATES):
        if schema._hooks[tag]:
            raise NoFastPath(f"{where}: {tag} hooks would change or judge the body")
    checks: dict[str, Check] = {}
    for name, field in schema.fields.items():
        if field.dump_only or field.data_key not in (None, name) or field.attribute not in (None, name):
            raise NoFastPath(f"{where}.{name}: renamed or dump-only fields")
        if field.load_default is not missing:
            raise NoFastPath(f"{where}.{name}: a default would add a key")
        checks[name] = _compile_field(field, f"{where}.{name}")
    required = tuple(name for name, field in schema.fields.items() if field.required)
    whole = tuple(_schema_validator(schema, hook) for hook in schema._hooks[VALIDATES_SCHEMA])

    def check(value: Any) -> bool:
        if type(value) is not dict:
            return False
        for key, item in value.items():
            field_check = checks.get(key)
            if field_check is None or not field_check(item):
                return False
        for name in required:
            if name not in value:
                return False
        return all(map(_passes, whole, repeat(value)))

    return check


def _schema_validator(schema: Schema, hook: tuple[str, bool, dict]) -> Check:
    attr_name, pass_collection, options = hook
    if pass_collection or options.get("pass_original"):
        raise NoFastPath(f"{type(schema).__name__}.{attr_name}: collection or original-data validators")
    method = getattr(schema, attr_name)

    def check(value: dict) -> bool:
        try:
            method(value, partial=None, many=False, unknown=RAISE)
        except ValidationError:
            return False
        return True

    return check


def _compile_field(field: fields.Field, where: str) -> Check:
    if field.allow_none:
        raise NoFastPath(f"{where}: null is never a finding")
    if type(field) is fields.Nested:
        if field.many:
            raise NoFastPath(f"{where}: nested lists")
        if field.validators:
            raise NoFastPath(f"{where}: validators on a nested field")
        return compile_schema(field.schema)
    if type(field) is fields.List:
        return _all_of(_list_check(_compile_field(field.inner, f"{where}[]")), field.validators, where)
    if type(field) is fields.String:
        return _all_of(_is(str), field.validators, where)
    if isinstance(field, fields.Integer) and field.strict and type(field).__name__ == "StrictInteger":
        return _all_of(_is(int), field.validators, where)  # type() is int: bool is refused like StrictInteger
    raise NoFastPath(f"{where}: no fast path for {type(field).__name__}")


def _is(kind: type) -> Check:
    return lambda value: type(value) is kind


def _list_check(item: Check) -> Check:
    return lambda value: type(value) is list and all(map(item, value))


def _all_of(base: Check, validators: list[Any], where: str) -> Check:
    # Specialised by count: this runs once per field of every request.
    extra = [_compile_validator(v, where) for v in validators]
    if not extra:
        return base
    if len(extra) == 1:
        (only,) = extra
        return lambda value: base(value) and only(value)
    if len(extra) == 2:
        first, second = extra
        return lambda value: base(value) and first(value) and second(value)

    return lambda value: base(value) and all(map(_passes, extra, repeat(value)))


def _passes(validator: Check, value: Any) -> bool:
    return validator(value)


def _compile_validator(validator: Any, where: str) -> Check:
    from schemas.base import unique_items

    if validator is unique_items:
        return lambda value: len(set(value)) == len(value)
    if type(validator) is validate.OneOf:
        choices = frozenset(validator.choices)
        return lambda value: value in choices
    if type(validator) is validate.Range:
        return _range(validator)
    if type(validator) is validate.Length and validator.equal is None:
        low = 0 if validator.min is None else validator.min
        high = validator.max
        return lambda value: low <= len(value) and (high is None or len(value) <= high)
    raise NoFastPath(f"{where}: no fast path for validator {validator!r}")


def _range(validator: validate.Range) -> Check:
    low, high = validator.min, validator.max
    low_ok = (lambda v: True) if low is None else (lambda v: v >= low if validator.min_inclusive else v > low)
    high_ok = (lambda v: True) if high is None else (lambda v: v <= high if validator.max_inclusive else v < high)
    return lambda value: low_ok(value) and high_ok(value)


class FastLoadSchema(Schema):
    """A schema whose load skips marshmallow for bodies the compiled checks accept unchanged."""

    _fast_check: Check | None = None

    @classmethod
    def compile_fast_path(cls) -> None:
        """Compile once, at import of the schema module, so a schema it cannot handle stops start-up."""
        cls._fast_check = compile_schema(cls())

    def load(self, data: Any, *, many: bool | None = None, partial: Any = None, unknown: Any = None) -> Any:
        check = type(self)._fast_check
        plain = many is None and partial is None and unknown in (None, RAISE) and self.only is None
        if check is not None and plain and not self.exclude and check(data):
            return data
        return super().load(data, many=many, partial=partial, unknown=unknown)
