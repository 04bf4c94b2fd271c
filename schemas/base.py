"""Strict building blocks: unknown keys, wrong types and out-of-range values are errors, never coerced."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

TRI = ("present", "absent", "unknown")


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


def _about(description: str | None) -> dict[str, str]:
    return {"description": description} if description else {}


# Response fields: an answer always carries every one of them, so each is required.
def string(description: str | None = None, **kwargs: Any) -> fields.String:
    return fields.String(required=True, metadata=_about(description), **kwargs)


def integer(description: str | None = None) -> fields.Integer:
    return fields.Integer(required=True, metadata=_about(description))


def boolean(description: str) -> fields.Boolean:
    return fields.Boolean(required=True, metadata=_about(description))


def strings(description: str | None = None) -> fields.List:
    return fields.List(fields.String(), required=True, metadata=_about(description))


def many(schema: type[Schema], description: str | None = None) -> fields.List:
    return fields.List(fields.Nested(schema), required=True, metadata=_about(description))


def choice(values: tuple[str, ...] | list[str], description: str, **kwargs: Any) -> fields.String:
    return fields.String(validate=validate.OneOf(values), metadata={"description": description}, **kwargs)


def tri(description: str) -> fields.String:
    return choice(TRI, description + " Omitted means unknown.")


def unique_items(items: list[Any]) -> None:
    if len(set(items)) != len(items):
        raise ValidationError("Items must be unique.")


def choice_list(values: tuple[str, ...], description: str) -> fields.List:
    return fields.List(
        fields.String(validate=validate.OneOf(values)),
        validate=[validate.Length(max=len(values)), unique_items],
        metadata={"description": description, "uniqueItems": True},
    )
