"""The allowed shape of every data file, declared as marshmallow schemas, and their problems as lines.

Every mapping refuses unknown keys and every value has a strict type (PyYAML reads unquoted `yes`,
`1.0` or `2026-12-01` as a boolean, a float or a date: none passes for a string). `shape_problems`
turns marshmallow's error tree into `file: path.to[3].key: message (line n)` lines, every one at
once. The shape is checked before anything is built, so a malformed file is a list of problems,
never a KeyError or TypeError; what the values mean (references, levels, citations) is checked by
the loaders afterwards.

The knowledge files, their coverage.yaml and the pieces other files use are here; the FHIR mapping
(service/cds/mapping.py) and the API-key file (service/auth/policy.py) declare theirs beside their loaders.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from service.knowledge.yamlfile import Document, PathPart, yaml_path

TESTS = ("is", "in", "has", "has_any", "empty", "at_least", "below", "unknown")


# --- strict building blocks -------------------------------------------------------------------------
class Strict(Schema):
    """A mapping with exactly the declared keys."""

    class Meta:
        unknown = RAISE

    error_messages = {"unknown": "unknown key", "type": "must be a mapping"}


class _Messages:
    """Our messages; and a value not of a type in `accepts` is invalid before marshmallow converts it."""

    default_error_messages = {"required": "required key missing", "null": "must not be empty (null)"}
    accepts: tuple[type, ...] = (object,)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, self.accepts):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class Str(_Messages, fields.String):
    """A string, and only a string (marshmallow also takes bytes)."""

    accepts = (str,)
    default_error_messages = {"invalid": "must be a string"}


class Int(_Messages, fields.Integer):
    """A whole number: no float, string or boolean."""

    default_error_messages = {"invalid": "must be a whole number"}

    def __init__(self, **kwargs: Any):
        super().__init__(strict=True, **kwargs)


class Bool(_Messages, fields.Boolean):
    """true or false, not `1` or `"yes"` (marshmallow's Boolean takes those)."""

    accepts = (bool,)
    default_error_messages = {"invalid": "must be true or false"}


class List(_Messages, fields.List):
    """A YAML list (marshmallow also takes tuples and sets: YAML's !!set is not a list)."""

    accepts = (list,)
    default_error_messages = {"invalid": "must be a list"}


class Nested(_Messages, fields.Nested):
    pass


class Mapping(_Messages, fields.Field):
    """A mapping with free string keys (ids, paths, codes), each value of one shape.

    marshmallow's Dict reports a value's errors under `key`/`value` sub-keys, which would read as
    part of the path; here they sit directly under the key."""

    default_error_messages = {"invalid": "must be a mapping", "key": "key must be a string"}

    def __init__(self, values: fields.Field, **kwargs: Any):
        super().__init__(**kwargs)
        self.values = values

    def _bind_to_schema(self, field_name: str, parent: Any) -> None:
        super()._bind_to_schema(field_name, parent)
        self.values = copy.deepcopy(self.values)
        self.values._bind_to_schema(field_name, self)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, dict):
            raise self.make_error("invalid")
        out, errors = {}, {}
        for key, item in value.items():
            if not isinstance(key, str):
                errors[key] = [self.error_messages["key"]]
                continue
            try:
                out[key] = self.values.deserialize(item, **kwargs)
            except ValidationError as exc:
                errors[key] = exc.messages
        if errors:
            raise ValidationError(errors)
        return out


def pair(**kwargs: Any) -> List:
    """[first, last]: two whole numbers."""
    return List(Int(), validate=validate.Length(equal=2, error="must be two whole numbers [first, last]"), **kwargs)


def shape_problems(schema: Schema, doc: Document, name: str) -> list[str]:
    """Every way `doc` departs from `schema`, as `name: path: message (line n)` lines."""
    errors = schema.validate(doc.data) if isinstance(doc.data, dict) else {"_schema": ["must be a mapping"]}
    lines = []
    for path, message in _flatten(errors, ()):
        line = doc.line(path)
        where = f"{yaml_path(path)}: " if path else ""
        lines.append(f"{name}: {where}{message}" + (f" (line {line})" if line else ""))
    return lines


def _flatten(errors: Any, path: tuple[PathPart, ...]) -> Iterator[tuple[tuple[PathPart, ...], str]]:
    # marshmallow's errors: a dict by key or list index, "_schema" for the mapping itself, leaves lists of text.
    if isinstance(errors, dict):
        for key, sub in errors.items():
            yield from _flatten(sub, path if key == "_schema" else (*path, key))
    elif isinstance(errors, list):
        for sub in errors:
            yield from _flatten(sub, path)
    else:
        yield path, str(errors)


# --- rule conditions -------------------------------------------------------------------------------
class _AtomBase(Strict):
    @validates_schema
    def one_test(self, data: dict[str, Any], **kwargs: Any) -> None:
        if len(set(data) & set(TESTS)) != 1:
            raise ValidationError(f"a finding needs exactly one test: {', '.join(TESTS)}")


def _conditions() -> List:
    return List(Condition(), required=True)


class Condition(_Messages, fields.Field):
    """{fact: PATH, TEST: VALUE}, {all: [..]}, {any: [..]}, {at_least: N, of: [..]} or {ref: NAME} (rules.yaml)."""

    default_error_messages = {
        # (braces doubled: marshmallow formats its messages)
        "invalid": "must be a condition: {{fact: .., TEST: ..}}, {{all: [..]}}, {{any: [..]}}, "
        "{{at_least: N, of: [..]}} or {{ref: ..}}"
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, dict):
            raise self.make_error("invalid")
        for key, schema in _CONDITION_SCHEMAS:  # the key that says which kind of condition it is
            if key in value:
                return schema().load(value)
        raise self.make_error("invalid")


_Atom = _AtomBase.from_dict(
    {
        "fact": Str(required=True),
        "is": Str(),
        "in": List(Str()),
        "has": Str(),
        "has_any": List(Str()),
        "empty": Bool(),
        "unknown": Bool(),
        "at_least": Int(),
        "below": Int(),
    },
    name="Atom",
)
_CONDITION_SCHEMAS: tuple[tuple[str, type[Schema]], ...] = (
    ("fact", _Atom),
    ("of", Strict.from_dict({"at_least": Int(required=True), "of": _conditions()}, name="Count")),
    ("all", Strict.from_dict({"all": _conditions()}, name="All")),
    ("any", Strict.from_dict({"any": _conditions()}, name="AnyOf")),
    ("ref", Strict.from_dict({"ref": Str(required=True)}, name="Ref")),
)


# --- sources.yaml and citations.yaml ---------------------------------------------------------------
class _Section(Strict):
    id = Str(required=True)
    heading = Str(required=True, allow_none=True)
    start = Int(required=True)
    end = Int(required=True)
    paragraphs = List(pair(), required=True)


class _Source(Strict):
    id = Str(required=True)
    file = Str(required=True)
    held = Str(required=True, validate=validate.OneOf(("texts", "project")))
    title = Str(required=True)
    kind = Str(required=True)
    authority = Str(required=True)
    sha256 = Str(required=True)
    length = Int(required=True)
    sections = List(Nested(_Section), required=True)


class SourcesFile(Strict):
    sources = List(Nested(_Source), required=True)


class _Citation(Strict):
    source = Str(required=True)
    section = Str(required=True)
    paragraph = Int(required=True)
    sentences = pair()
    start = Int(required=True)
    end = Int(required=True)
    sha256 = Str(required=True)
    urgency = Str()


class CitationsFile(Strict):
    citations = Mapping(Nested(_Citation), required=True)


# --- findings.yaml ---------------------------------------------------------------------------------
# Keys a finding may have besides kind, question and red_flag, by kind: a key the kind ignores is refused.
_KIND_KEYS = {
    "tri": set(),
    "enum": {"values", "unknown", "normal"},
    "set": {"values", "unknown", "normal"},
    "int": {"min", "max", "attribute"},
}
_KIND_NEEDS = {"tri": set(), "enum": {"values"}, "set": {"values"}, "int": {"min", "max"}}


class RedFlag(_Messages, fields.Field):
    """true (every abnormal value), false, or a list of the abnormal values that are red flags."""

    default_error_messages = {"invalid": "must be true, false or a list of values"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return value
        raise self.make_error("invalid")


class _Finding(Strict):
    kind = Str(required=True, validate=validate.OneOf(tuple(_KIND_KEYS)))
    question = Str(required=True)
    red_flag = RedFlag()
    values = List(Str())
    unknown = List(Str())
    normal = List(Str())
    min = Int()
    max = Int()
    attribute = Bool()

    @validates_schema
    def fits_kind(self, data: dict[str, Any], **kwargs: Any) -> None:
        kind = data["kind"]
        errors = {
            key: [f"not used by a finding of kind {kind}"]
            for key in data
            if key not in {"kind", "question", "red_flag"} | _KIND_KEYS[kind]
        }
        errors |= {key: [f"required for a finding of kind {kind}"] for key in _KIND_NEEDS[kind] - set(data)}
        if errors:
            raise ValidationError(errors)


class _Conflict(Strict):
    id = Str(required=True)
    statement = Str(required=True)
    when = Condition(required=True)
    unknown = List(Str())
    citations = List(Str(), required=True)


class FindingsFile(Strict):
    findings = Mapping(Nested(_Finding), required=True)
    derived = Mapping(Condition())
    conflicts = List(Nested(_Conflict))


# --- catalog.yaml ----------------------------------------------------------------------------------
class _Level(Strict):
    label = Str(required=True)
    action = Str(required=True)
    referral = Str(required=True)
    indicator = Str(required=True, validate=validate.OneOf(("critical", "warning", "info")))


class _Urgency(Strict):
    word = Str(required=True)
    priority = Str(required=True, validate=validate.OneOf(("routine", "urgent", "asap", "stat")))  # FHIR R4


class _Cause(Strict):
    name = Str(required=True)
    about = Str(required=True)
    citations = List(Str(), required=True)


class _Advice(Strict):
    text = Str(required=True)
    up_to = Str(required=True)
    citations = List(Str(), required=True)


class _Scope(Strict):
    age = Str(required=True)
    min_age = Int(required=True)
    notes = Nested(
        Strict.from_dict({"in": Str(required=True), "out": Str(required=True), "unknown": Str(required=True)}),
        required=True,
    )
    citations = List(Str(), required=True)


class _Incomplete(Strict):
    up_to = Str(required=True)
    label = Str(required=True)
    action = Str(required=True)


class CatalogFile(Strict):
    version = Str(required=True)
    levels = Mapping(Nested(_Level), required=True)
    referral_targets = Mapping(Str(), required=True)  # id -> name
    tests = Mapping(Str(), required=True)  # id -> name
    emergency_tests = List(Str())
    urgencies = Mapping(Nested(_Urgency), required=True)
    authorities = Mapping(Str(), required=True)
    scope = Nested(_Scope)
    incomplete = Nested(_Incomplete, required=True)
    causes = Mapping(Nested(_Cause), required=True)
    advice = Mapping(Nested(_Advice), required=True)


# --- rules.yaml ------------------------------------------------------------------------------------
class _Referral(Strict):
    to = Str(required=True)
    urgency = Str(required=True)
    tests = List(Str())


class _Then(Strict):
    level = Str()
    causes = Mapping(Int())
    referrals = List(Nested(_Referral))
    advice = List(Str())


class _Rule(Strict):
    id = Str(required=True)
    statement = Str(required=True)
    when = Condition(required=True)
    then = Nested(_Then, required=True)
    citations = List(Str(), required=True)


class RulesFile(Strict):
    rules = List(Nested(_Rule), required=True)


# --- coverage.yaml ---------------------------------------------------------------------------------
class CoverageFile(Strict):
    # source id -> section id -> why no rule, cause or advice cites it
    uncited = Mapping(Mapping(Str()), required=True)


KNOWLEDGE_SCHEMAS: dict[str, type[Schema]] = {
    "sources": SourcesFile,
    "citations": CitationsFile,
    "findings": FindingsFile,
    "catalog": CatalogFile,
    "rules": RulesFile,
}
