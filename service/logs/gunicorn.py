"""gunicorn's own log records, redacted (deploy/gunicorn.conf.py installs the filter)."""

from __future__ import annotations

import logging


class GunicornRedactor(logging.Filter):
    """gunicorn's messages about bad requests quote the request line (query string included): keep
    what happened, drop what the client sent."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Invalid request from ip="):
            record.msg, record.args = message.split(":", 1)[0] + ": (request withheld)", ()
        elif message.startswith("Error handling request"):
            record.msg, record.args = "Error handling request (request withheld)", ()
        record.exc_info, record.exc_text = None, None
        return True
