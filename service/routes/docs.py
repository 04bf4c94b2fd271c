"""GET /docs: interactive API docs (Swagger UI), served entirely by the service (/docs/ redirects there).

The Swagger UI assets come from the swagger-ui-bundle package (Apache-2.0, its licence is served at
/docs/assets/LICENSE): no CDN, no outside request. The page has no inline script, so a strict
Content-Security-Policy still holds: scripts, styles and the OpenAPI document come from this origin
only. Guarded like /openapi.json (the "docs" scope; DOCS_OPEN opens it).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import flask
import swagger_ui_bundle

blp = flask.Blueprint("docs", __name__)

ASSETS = Path(swagger_ui_bundle.swagger_ui_path)
LICENCE = metadata.distribution("swagger-ui-bundle").read_text("LICENSE") or ""  # Apache-2.0
# The files the page loads, and nothing else of the package's folder.
ASSET_FILES = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "favicon-16x16.png"})
# Swagger UI sets style attributes and draws some icons as data: images; it fetches the document
# (and, on "Try it out", the API) from this origin.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Leg-raise triage API</title>
  <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
"""

INIT = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    docExpansion: "list",
    displayOperationId: true,
    validatorUrl: null,  // Swagger UI would otherwise send the document to validator.swagger.io
    tryItOutEnabled: false,
  });
});
"""


def _with_policy(response: flask.Response) -> flask.Response:
    response.headers["Content-Security-Policy"] = DOCS_POLICY
    return response


@blp.get("/docs")
def docs_page() -> flask.Response:
    return _with_policy(flask.Response(PAGE, mimetype="text/html"))


@blp.get("/docs/")
def docs_slash() -> flask.Response:
    # /docs/ as typed or pasted (werkzeug redirects only /x to /x/, never back) goes to the page's one URL.
    # Guarded like /docs (ROUTE_SCOPES), so the redirect tells a caller without the docs scope nothing.
    return flask.redirect("/docs", code=308)


@blp.get("/docs/init.js")
def docs_init() -> flask.Response:
    return _with_policy(flask.Response(INIT, mimetype="text/javascript"))


@blp.get("/docs/assets/<name>")
def docs_asset(name: str) -> flask.Response:
    if name == "LICENSE":
        return _with_policy(flask.Response(LICENCE, mimetype="text/plain"))
    if name not in ASSET_FILES:
        flask.abort(404)
    return _with_policy(flask.send_from_directory(ASSETS, name, max_age=0))
