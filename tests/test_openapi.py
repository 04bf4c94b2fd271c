"""The committed openapi.yaml: in step with the code, valid, documented, and true to the service."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "openapi.yaml"
PROBLEM = "application/problem+json"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    return yaml.safe_load(COMMITTED.read_text(encoding="utf-8"))


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    ]


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow local $refs (RFC 6901 pointers into the same document)."""
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        target: Any = spec
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def triage_op(spec: dict[str, Any]) -> dict[str, Any]:
    return spec["paths"]["/v1/triage"]["post"]


def test_committed_spec_matches_code(app, committed):
    generated = app.extensions["triage_api"].spec.to_dict()
    assert committed == generated, (
        "openapi.yaml is out of date with the schemas and routes: run `make openapi` and commit the result"
    )


def refs(node: Any) -> set[str]:
    """Every $ref anywhere under node."""
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(value) for value in node))
    return set()


@pytest.mark.parametrize("source", ["code", "committed"])
def test_every_schema_in_the_spec_is_used_by_an_operation(app, committed, source):
    """No component a client generator would turn into a model nobody sends or receives (such as
    flask-smorest's PaginationMetadata: the service pages nothing)."""
    spec = app.extensions["triage_api"].spec.to_dict() if source == "code" else committed
    used, todo = set(), refs(spec["paths"])
    while todo:  # follow components into the components they refer to
        ref = todo.pop()
        if ref not in used:
            used.add(ref)
            todo |= refs(resolve(spec, {"$ref": ref}))
    schemas = {f"#/components/schemas/{name}" for name in spec["components"]["schemas"]}
    assert schemas - used == set()


def test_committed_spec_is_valid_openapi_3_0_3(committed):
    validate(committed)
    assert committed["openapi"] == "3.0.3"


def test_every_operation_has_an_operation_id(committed):
    ops = operations(committed)
    assert len(ops) >= 7
    missing = [f"{method.upper()} {path}" for path, method, op in ops if not op.get("operationId")]
    assert not missing, f"operations without operationId: {missing}"
    ids = [op["operationId"] for _, _, op in ops]
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_triage_has_request_and_response_examples(committed):
    op = triage_op(committed)
    request = op["requestBody"]["content"]["application/json"]
    assert isinstance(request.get("example"), dict)
    assert "findings" in request["example"]
    ok = resolve(committed, op["responses"]["200"])["content"]["application/json"]
    assert isinstance(ok.get("example"), dict)
    assert "triage" in ok["example"]


def test_triage_documents_its_client_errors(committed):
    assert {"400", "413", "415", "422"} <= set(triage_op(committed)["responses"])


def test_error_responses_are_problem_json(committed):
    checked = 0
    for path, method, op in operations(committed):
        if path.startswith("/cds-services"):
            continue  # EHR-facing: OperationOutcome bodies (next test)
        for status, response in op["responses"].items():
            if status.startswith("2"):
                continue
            content = resolve(committed, response).get("content", {})
            where = f"{method.upper()} {path} {status}"
            assert set(content) == {PROBLEM}, f"{where} is documented as {sorted(content)}"
            schema = resolve(committed, content[PROBLEM]["schema"])
            assert {"type", "title", "status"} <= set(schema["required"]), where
            checked += 1
    assert checked >= 10


def test_served_yaml_is_the_committed_document(client, committed):
    response = client.get("/openapi.yaml")
    assert response.status_code == 200
    assert response.mimetype == "application/yaml"
    assert yaml.safe_load(response.get_data(as_text=True)) == committed


def test_served_json_is_the_committed_document(client, committed):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == committed


def test_request_example_gives_the_documented_response(client, committed):
    op = triage_op(committed)
    example_request = op["requestBody"]["content"]["application/json"]["example"]
    example_response = resolve(committed, op["responses"]["200"])["content"]["application/json"]["example"]
    response = client.post("/v1/triage", json=example_request)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == example_response


def test_cds_hooks_errors_are_documented_as_operation_outcomes(committed):
    cds = [(path, method, op) for path, method, op in operations(committed) if path.startswith("/cds-services")]
    assert len(cds) == 3
    for path, method, op in cds:
        assert op["security"] == [{"cdsClientJwt": []}], path
        errors = {s: r for s, r in op["responses"].items() if not s.startswith("2")}
        assert "401" in errors and "default" not in errors, f"{method} {path}"
        for status, response in errors.items():
            schema = resolve(committed, response)["content"]["application/json"]["schema"]
            assert resolve(committed, schema)["properties"]["resourceType"]["enum"] == ["OperationOutcome"], status


def test_v1_security_is_declared_per_operation(committed):
    """Issue 20: Swagger UI's Authorize button and every generated SDK know how /v1 is authenticated."""
    schemes = committed["components"]["securitySchemes"]
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert (schemes["bearerJwt"]["type"], schemes["bearerJwt"]["scheme"]) == ("http", "bearer")
    for path, ops in committed["paths"].items():
        for method, op in ops.items():
            if method == "parameters":
                continue
            if path.startswith("/v1/"):
                assert op["security"] == [{"apiKey": []}, {"bearerJwt": []}], (path, method)
                assert {"401", "403"} <= set(op["responses"]), (path, method)
                assert "scope" in op["description"], (path, method)
            elif path in ("/livez", "/readyz"):
                assert op["security"] == [], path


def test_fhir_server_is_documented_as_the_service_checks_it(committed):
    """Issue 20: `format: url` let "" through the document while the service refused it."""
    prop = committed["components"]["schemas"]["CdsRequest"]["properties"]["fhirServer"]
    assert prop["format"] == "url"
    assert re.match(prop["pattern"], "https://fhir.hospital.example/r4")
    assert not re.match(prop["pattern"], "") and not re.match(prop["pattern"], "ftp://fhir.example")
