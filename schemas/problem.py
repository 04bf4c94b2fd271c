"""RFC 9457 problem details, the body of every error response."""

from marshmallow import fields

from schemas.base import StrictSchema


class FieldError(StrictSchema):
    field = fields.String(required=True, metadata={"description": "Dot path of the offending field."})
    pointer = fields.String(required=True, metadata={"description": "JSON Pointer (RFC 6901) as a fragment."})
    detail = fields.String(required=True)


class Problem(StrictSchema):
    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String()
    request_id = fields.String(metadata={"description": "Echoes the X-Request-ID response header."})
    errors = fields.List(fields.Nested(FieldError), metadata={"description": "Validation errors, one per message."})
