"""A fast path for request bodies the schema accepts unchanged; marshmallow stays the judge.

marshmallow's load costs about 100 µs for a full exam, most of it framework bookkeeping for a body
that turns out valid. At start-up the request schema is compiled into plain checks (generated Python source, one
function per schema). When they
accept a body, the body is what marshmallow would return: same keys, same values, nothing coerced.
When they decline, marshmallow loads the body as before, so every error keeps its exact message.

The compiler is strict about what it understands. A field type, a validator or a hook it doesn't
know stops it at import with an error rather than guessing, and a schema that allows unknown keys
gets no fast path. tests/test_fastpath.py checks the fast path against marshmallow on random bodies,
valid and broken: whatever the checks accept, marshmallow accepts unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate
from marshmallow.decorators import POST_LOAD, PRE_LOAD, VALIDATES, VALIDATES_SCHEMA
from marshmallow.utils import missing

Check = Callable[[Any], bool]


class NoFastPath(TypeError):
    """The schema uses something the compiler does not understand."""


def compile_schema(schema: Schema) -> Check:
    """A predicate that is true only for a body `schema.load` returns unchanged."""
    writer = _Writer()
    name = writer.schema(schema)
    return writer.compile(name)


class _Writer:
    """Writes the checks as Python source, one function per schema (nested ones included), each a
    straight run of type and range tests that returns False at the first one that fails. Written
    out, the checks cost a third of the same checks as a tree of closures. Constants (choices, the
    schema-level validators) are module-level names of the generated code."""

    def __init__(self) -> None:
        self.functions: list[str] = []
        self.constants: dict[str, Any] = {}

    def constant(self, value: Any) -> str:
        name = f"K{len(self.constants)}"
        self.constants[name] = value
        return name

    def schema(self, schema: Schema) -> str:
        where = type(schema).__name__
        if schema.unknown != RAISE:
            raise NoFastPath(f"{where}: unknown keys must be refused (unknown = RAISE)")
        for tag in (PRE_LOAD, POST_LOAD, VALIDATES):
            if schema._hooks[tag]:
                raise NoFastPath(f"{where}: {tag} hooks would change or judge the body")
        body: list[str] = []
        choices = _choices_of_every_field(schema)
        for name, field in schema.fields.items():
            if field.dump_only or field.data_key not in (None, name) or field.attribute not in (None, name):
                raise NoFastPath(f"{where}.{name}: renamed or dump-only fields")
            if field.load_default is not missing:
                raise NoFastPath(f"{where}.{name}: a default would add a key")
            if choices is not None:
                continue
            lines = self.field(field, "v0", f"{where}.{name}", depth=0)
            body.append(f"v0 = value.get({name!r}, MISSING)")
            if field.required:
                body.append("if v0 is MISSING: return False")
            body.append("if v0 is not MISSING:")
            body += [f"    {line}" for line in lines]
        if choices is not None:
            # Every field an optional string choice: one pass over the keys present instead of a
            # lookup per field (they are known to be fields by then).
            body = ["for key, v0 in value.items():", f"    if v0 not in {self.constant(choices)}[key]: return False"]
        keys = self.constant(frozenset(schema.fields))
        whole = [self.constant(_schema_validator(schema, hook)) for hook in schema._hooks[VALIDATES_SCHEMA]]
        function = f"s{len(self.functions)}"  # after the nested schemas' own, written above
        source = [
            f"def {function}(value):  # {where}",
            "    if type(value) is not dict: return False",
            f"    if not {keys}.issuperset(value): return False",
            "    try:",
            *(f"        {line}" for line in body),
            "    except TypeError:  # an unhashable value tested against a set of choices",
            "        return False",
            *(f"    if not {check}(value): return False" for check in whole),
            "    return True",
        ]
        self.functions.append("\n".join(source))
        return function

    def field(self, field: fields.Field, var: str, where: str, depth: int) -> list[str]:
        """Lines that `return False` unless `var` passes `field`."""
        if field.allow_none:
            raise NoFastPath(f"{where}: null is never a finding")
        if type(field) is fields.Nested:
            if field.many:
                raise NoFastPath(f"{where}: nested lists")
            if field.validators:
                raise NoFastPath(f"{where}: validators on a nested field")
            return [f"if not {self.schema(field.schema)}({var}): return False"]
        if type(field) is fields.List:
            item = f"v{depth + 1}"
            inner = self.field(field.inner, item, f"{where}[]", depth + 1)
            lines = [f"if type({var}) is not list: return False", f"for {item} in {var}:"]
            lines += [f"    {line}" for line in inner]
        elif type(field) is fields.String:
            if any(type(v) is validate.OneOf and all(type(c) is str for c in v.choices) for v in field.validators):
                # The choices are strings, and no other JSON value equals one: the choice test alone
                # is the type test. (A str subclass passes, as marshmallow's String takes it unchanged.)
                lines = []
            else:
                lines = [f"if type({var}) is not str: return False"]
        elif isinstance(field, fields.Integer) and field.strict and type(field).__name__ == "StrictInteger":
            lines = [f"if type({var}) is not int: return False"]  # type() is int: bool is refused like StrictInteger
        else:
            raise NoFastPath(f"{where}: no fast path for {type(field).__name__}")
        for validator in field.validators:
            lines += self.validator(validator, var, where)
        return lines

    def validator(self, validator: Any, var: str, where: str) -> list[str]:
        from schemas.base import unique_items

        if validator is unique_items:
            return [f"if len(set({var})) != len({var}): return False"]
        if type(validator) is validate.OneOf:
            return [f"if {var} not in {self.constant(frozenset(validator.choices))}: return False"]
        if type(validator) is validate.Range:
            lines = []
            if validator.min is not None:
                below = "<" if validator.min_inclusive else "<="
                lines.append(f"if {var} {below} {self.constant(validator.min)}: return False")
            if validator.max is not None:
                above = ">" if validator.max_inclusive else ">="
                lines.append(f"if {var} {above} {self.constant(validator.max)}: return False")
            return lines
        if type(validator) is validate.Length and validator.equal is None:
            lines = []
            if validator.min:
                lines.append(f"if len({var}) < {self.constant(validator.min)}: return False")
            if validator.max is not None:
                lines.append(f"if len({var}) > {self.constant(validator.max)}: return False")
            return lines
        raise NoFastPath(f"{where}: no fast path for validator {validator!r}")

    def compile(self, entry: str) -> Check:
        source = "\n\n".join(self.functions) + "\n"
        namespace: dict[str, Any] = {"MISSING": missing, **self.constants}
        # Only names, repr() of field names and the constants' names go into the source. Bandit waiver
        # (B102, exec): the source is written by this class from the request schema, a class in schemas/,
        # never from a request body or a file; values reach it as names bound in `namespace`, not as text.
        code = compile(source, "<request checks>", "exec")
        exec(code, namespace)  # nosec B102 # generated from the schema only: see the waiver above
        check = namespace[entry]
        check.source = source  # type: ignore[attr-defined]  # for reading and debugging
        return check


def _choices_of_every_field(schema: Schema) -> dict[str, frozenset[str]] | None:
    """Field name -> its string choices, when every field is an optional String whose one validator
    is a OneOf of strings; else None."""
    choices = {}
    for name, field in schema.fields.items():
        validators = field.validators
        if type(field) is not fields.String or field.required or len(validators) != 1:
            return None
        (one,) = validators
        if type(one) is not validate.OneOf or not all(type(c) is str for c in one.choices):
            return None
        choices[name] = frozenset(one.choices)
    return choices


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


class FastLoadSchema(Schema):
    """A schema whose load skips marshmallow for bodies the compiled checks accept unchanged."""

    _fast_check: Check | None = None

    @classmethod
    def compile_fast_path(cls) -> None:
        """Compile once, at import of the schema module, so a schema it cannot handle stops start-up."""
        cls._fast_check = compile_schema(cls())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The checks were compiled for the whole schema: an instance limited by only/exclude has none.
        self._fast_load = type(self)._fast_check if self.only is None and not self.exclude else None

    def load(self, data: Any, *, many: bool | None = None, partial: Any = None, unknown: Any = None) -> Any:
        check = self._fast_load
        if check is not None and many is None and partial is None and unknown in (None, RAISE) and check(data):
            return data
        return super().load(data, many=many, partial=partial, unknown=unknown)
