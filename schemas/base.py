"""Strict building blocks: unknown keys, wrong types and out-of-range values are errors, never coerced."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

TRI = ("present", "absent", "unknown")
MAX_TEXT = 64  # longest string any enum field accepts


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class StrictInteger(fields.Integer):
    """An integer that rejects floats, numeric strings and booleans (JSON true is not 1)."""

    def __init__(self, **kwargs: Any):
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


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
