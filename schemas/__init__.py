"""marshmallow schemas: the HTTP contract. openapi.yaml is generated from them."""
