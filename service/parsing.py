"""Request bodies: read whole, decoded strictly, validated once (webargs' FlaskParser, specialised)."""

from __future__ import annotations

from typing import Any, NoReturn

import flask
import marshmallow
from gunicorn.http.errors import ParseException
from webargs.flaskparser import FlaskParser, abort, is_json_request
from werkzeug.exceptions import RequestEntityTooLarge

from service.jsoncodec import InvalidJSON, parse_strict_json
from service.validation import ACCEPTORS, load


def read_whole_body(req: flask.Request) -> bytes:
    """The body as sent, or an error: werkzeug under gunicorn (wsgi.input_terminated) returns a cut body silently."""
    try:
        raw = req.get_data(cache=True)
    except ParseException as exc:  # gunicorn reads a chunked body lazily: a bad chunk surfaces here
        raise InvalidJSON("malformed chunked encoding") from exc
    declared, limit = req.content_length, req.max_content_length
    if declared is None and limit is not None and len(raw) >= limit and req.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()  # chunked body over the limit: werkzeug stops reading at the limit
    if declared is not None and len(raw) < declared:
        raise InvalidJSON("body shorter than its Content-Length")  # the client stopped sending
    return raw


class StrictJSONParser(FlaskParser):
    """JSON bodies must say they are JSON (else 415) and be unambiguous (else 400)."""

    def _raw_load_json(self, req: flask.Request) -> Any:
        # The usual header checked as it is before werkzeug parses it (its options, case, +json).
        if req.environ.get("CONTENT_TYPE") != "application/json" and not is_json_request(req):
            abort(415, message="Send the body as application/json.")
        return parse_strict_json(read_whole_body(req))

    def parse_body(self, schema: marshmallow.Schema, req: flask.Request) -> Any:
        """What parse(schema, req, location="json") returns, with the body read and decoded once: a
        body the app's JSON Schema accepts (service/validation.py) is used as it is; any other is
        loaded by marshmallow, whose errors are the 422 (the same answers as webargs' own parse)."""
        data = self.load_json(req, schema)  # 415 and 400 are raised here
        try:
            return load(schema, data, flask.current_app.extensions[ACCEPTORS])
        except marshmallow.ValidationError as error:
            self._on_validation_error(error, req, schema, "json", error_status_code=None, error_headers=None)

    def _handle_invalid_json_error(self, error: Exception, req: flask.Request, *args: Any, **kwargs: Any) -> NoReturn:
        reason = getattr(error, "reason", "malformed JSON")
        abort(400, message=f"Invalid JSON body: {reason}.")
