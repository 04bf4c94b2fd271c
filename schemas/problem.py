"""RFC 9457 problem details, the body of every error response."""

from marshmallow import fields

from schemas.base import StrictSchema, integer, string


class FieldError(StrictSchema):
    field = string("Dot path of the offending field.")
    pointer = string("JSON Pointer (RFC 6901) as a fragment.")
    detail = string()


class Problem(StrictSchema):
    type = string()
    title = string()
    status = integer()
    detail = fields.String()
    request_id = fields.String(metadata={"description": "Echoes the X-Request-ID response header."})
    errors = fields.List(fields.Nested(FieldError), metadata={"description": "Validation errors, one per message."})
