"""Print the OpenAPI document generated from the schemas: python -m service.openapi > openapi.yaml"""

import sys

from service.app import create_app, spec_yaml

if __name__ == "__main__":
    app = create_app({"LOG_LEVEL": "ERROR", "API_OPEN": True})
    sys.stdout.write(spec_yaml(app.extensions["triage_api"]))
