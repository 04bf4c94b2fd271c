"""JSON logs through structlog. Events carry ids, counts and timings only, never request content.

setup: structlog and stdlib logging configured per app, one JSON shape for both, and gunicorn's own
messages about bad requests redacted; buffer: a request's lines written together in one write;
requests: the request id and the request line.
"""
