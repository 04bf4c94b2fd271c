"""CDS Hooks 2.0.1: discovery, service call, feedback and cards (request validation and documentation)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from schemas.base import StrictSchema

UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
FHIR_ID = r"^[A-Za-z0-9\-.]{1,64}$"
REFERENCE = r"^(Practitioner|PractitionerRole|Patient|RelatedPerson)/[A-Za-z0-9\-.]{1,64}$"
# No "|" (logged as system|code) and no white space at either end. An explicit class, not \s, which Python's re,
# ECMA-262 (the OpenAPI pattern) and other engines define differently (e.g. for U+001E or U+FEFF).
CODE = r"^[^\t\n\v\f\r |]([^|]{0,62}[^\t\n\v\f\r |])?$"


def _text(max_length: int = 256, **kwargs: Any) -> fields.String:
    return fields.String(validate=validate.Length(min=1, max=max_length), **kwargs)


class _WholeString(validate.Regexp):
    """The whole value must match, as the OpenAPI (ECMA-262) pattern says: Python's `$` also matches before a
    final newline, so `Regexp` alone would take "p1\\n" as a FHIR id."""

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


def _pattern(regex: str, description: str, **kwargs: Any) -> fields.String:
    return fields.String(validate=_WholeString(regex), metadata={"description": description}, **kwargs)


RFC3339 = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"


def _rfc3339(value: str) -> None:
    if not re.fullmatch(RFC3339, value):
        raise ValidationError("Expected an RFC 3339 date-time with a time zone, e.g. 2026-11-22T10:05:31Z.")
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError("Not a valid date-time.") from exc


# --- service call -----------------------------------------------------------------------------
class PatientViewContext(StrictSchema):
    userId = _pattern(REFERENCE, "The user, e.g. Practitioner/123.", required=True)
    patientId = _pattern(FHIR_ID, "FHIR id of the patient in context.", required=True)
    encounterId = _pattern(FHIR_ID, "FHIR id of the encounter, if any.")


class OrderSelectContext(PatientViewContext):
    selections = fields.List(_text(256), required=True, validate=validate.Length(min=1, max=100))
    draftOrders = fields.Dict(required=True, metadata={"description": "A Bundle of the draft orders."})


CONTEXTS = {"patient-view": PatientViewContext, "order-select": OrderSelectContext}


class FhirAuthorization(StrictSchema):
    access_token = _text(8192, required=True, metadata={"description": "Bearer token for the FHIR server."})
    token_type = fields.String(required=True, validate=validate.OneOf(["Bearer"]))
    expires_in = fields.Integer(strict=True, required=True, validate=validate.Range(min=0))
    scope = _text(4096, required=True)
    subject = _text(256, required=True)
    patient = _pattern(FHIR_ID, "Patient the token is scoped to.")


class FhirData(fields.Dict):
    """A FHIR resource (JSON object), or null when the EHR has nothing recorded.

    Its resourceType, and for a Bundle the entries, are checked here with the rest of the call, so a malformed
    key is a 422 even when another key would need the FHIR server (service/cds/prefetch.py holds what that
    server answers to the same check). An OperationOutcome in place of the resource means "read it from fhirServer".
    """

    def __init__(self, description: str, resource_type: str):
        self.resource_type = resource_type
        kinds = {"type": "string", "enum": [resource_type, "OperationOutcome"]}
        metadata = {"description": description, "nullable": True, "required": ["resourceType"]}
        metadata["properties"] = {"resourceType": kinds}
        if resource_type == "Bundle":  # entries are checked in a Bundle, not in an OperationOutcome
            entries = {"type": "array", "items": {"type": "object", "properties": {"resource": {"type": "object"}}}}
            metadata["anyOf"] = [
                {"properties": {"resourceType": {"enum": ["OperationOutcome"]}}},
                {"properties": {"resourceType": {"enum": ["Bundle"]}, "entry": entries}},
            ]
        super().__init__(allow_none=True, validate=self._check_shape, metadata=metadata)

    def _check_shape(self, value: dict[str, Any]) -> None:
        kind = value.get("resourceType")
        if kind not in (self.resource_type, "OperationOutcome"):
            raise ValidationError(f"Expected a {self.resource_type}, an OperationOutcome or null.")
        entries = value.get("entry", [])
        if kind == "Bundle" and not (
            isinstance(entries, list)
            and all(isinstance(e, dict) and isinstance(e.get("resource", {}), dict) for e in entries)
        ):
            raise ValidationError("Bundle.entry must be a list of entries holding resources.")


class Prefetch(StrictSchema):
    patient = FhirData("Patient/{{context.patientId}}: the Patient.", "Patient")
    observations = FhirData("Searchset Bundle of the patient's exam Observations.", "Bundle")
    conditions = FhirData("Searchset Bundle of the patient's mapped Conditions.", "Bundle")
    vitals = FhirData(
        "Searchset Bundle of the patient's vital-sign Observations the mapping reads (body temperature). "
        "Optional: without it and without fhirServer, the findings it speaks for stay unknown.",
        "Bundle",
    )


class CdsRequest(StrictSchema):
    hook = fields.String(required=True, validate=validate.OneOf(list(CONTEXTS)))
    hookInstance = _text(128, required=True, metadata={"description": "UUID of this hook call."})
    fhirServer = fields.Url(
        schemes={"http", "https"},
        require_tld=False,
        metadata={
            "description": "Base URL of the EHR's FHIR server.",
            "pattern": "^[hH][tT][tT][pP][sS]?://\\S",  # rules out "" and other schemes; the check is stricter
        },
    )
    fhirAuthorization = fields.Nested(FhirAuthorization)
    context = fields.Dict(required=True, metadata={"description": "Hook context (patient-view or order-select)."})
    prefetch = fields.Nested(Prefetch)
    extension = fields.Dict(metadata={"description": "Extensions; accepted and not used."})

    class Meta(StrictSchema.Meta):
        openapi_rules = {  # _context_fits_hook, for the OpenAPI document
            "oneOf": [
                {"properties": {"hook": {"enum": [hook]}, "context": schema}} for hook, schema in CONTEXTS.items()
            ],
            "anyOf": [{"not": {"required": ["fhirAuthorization"]}}, {"required": ["fhirServer"]}],
        }

    @validates_schema
    def _context_fits_hook(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors = CONTEXTS[data["hook"]]().validate(data["context"])  # run only once every field is valid
        if errors:
            raise ValidationError(errors, "context")
        if "fhirAuthorization" in data and "fhirServer" not in data:
            raise ValidationError("Required when fhirAuthorization is sent.", "fhirServer")


# --- feedback ---------------------------------------------------------------------------------
class CdsCoding(StrictSchema):
    system = _text(512, required=True)
    code = _pattern(CODE, "The code.", required=True)
    display = _text(512)


class AcceptedSuggestion(StrictSchema):
    id = _pattern(UUID, "uuid of the accepted suggestion.", required=True)


class OverrideReason(StrictSchema):
    reason = fields.Nested(CdsCoding)
    userComment = _text(4000, metadata={"description": "Free text; kept out of logs."})


class FeedbackItem(StrictSchema):
    card = _pattern(UUID, "uuid of the card.", required=True)
    outcome = fields.String(required=True, validate=validate.OneOf(["accepted", "overridden"]))
    acceptedSuggestions = fields.List(fields.Nested(AcceptedSuggestion), validate=validate.Length(min=1, max=50))
    overrideReason = fields.Nested(OverrideReason)
    outcomeTimestamp = fields.String(
        required=True, validate=_rfc3339, metadata={"format": "date-time", "pattern": RFC3339}
    )

    class Meta(StrictSchema.Meta):
        openapi_rules = {  # _outcome_fits, for the OpenAPI document
            "oneOf": [
                {
                    "properties": {"outcome": {"enum": ["accepted"]}},
                    "required": ["acceptedSuggestions"],
                    "not": {"required": ["overrideReason"]},
                },
                {"properties": {"outcome": {"enum": ["overridden"]}}, "not": {"required": ["acceptedSuggestions"]}},
            ]
        }

    @validates_schema
    def _outcome_fits(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("outcome") == "accepted" and not data.get("acceptedSuggestions"):
            raise ValidationError("Required when the outcome is accepted.", "acceptedSuggestions")
        if data.get("outcome") == "accepted" and "overrideReason" in data:
            raise ValidationError("Only for overridden cards.", "overrideReason")
        if data.get("outcome") == "overridden" and "acceptedSuggestions" in data:
            raise ValidationError("Only for accepted cards.", "acceptedSuggestions")


class FeedbackRequest(StrictSchema):
    feedback = fields.List(fields.Nested(FeedbackItem), required=True, validate=validate.Length(min=1, max=100))


# --- responses (documentation) ----------------------------------------------------------------
class CdsServiceDefinition(StrictSchema):
    hook = fields.String(required=True)
    id = fields.String(required=True)
    title = fields.String(required=True)
    description = fields.String(required=True)
    prefetch = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    usageRequirements = fields.String(required=True)


class Discovery(StrictSchema):
    services = fields.List(fields.Nested(CdsServiceDefinition), required=True)


class CardSource(StrictSchema):
    label = fields.String(required=True)
    url = fields.String(metadata={"description": "Given when the service has a public base URL configured."})


class SuggestionAction(StrictSchema):
    type = fields.String(required=True, validate=validate.OneOf(["create"]))
    description = fields.String(required=True)
    resource = fields.Dict(required=True, metadata={"description": "A RiskAssessment or ServiceRequest (FHIR R4)."})


class Suggestion(StrictSchema):
    label = fields.String(required=True)
    uuid = fields.String(required=True)
    actions = fields.List(fields.Nested(SuggestionAction), required=True)


class CardLink(StrictSchema):
    label = fields.String(required=True)
    url = fields.String(required=True)
    type = fields.String(required=True, validate=validate.OneOf(["absolute"]))


class Card(StrictSchema):
    uuid = fields.String(required=True)
    summary = fields.String(required=True, validate=validate.Length(max=139))
    indicator = fields.String(required=True, validate=validate.OneOf(["info", "warning", "critical"]))
    detail = fields.String(required=True, metadata={"description": "GitHub-flavoured Markdown."})
    source = fields.Nested(CardSource, required=True)
    suggestions = fields.List(fields.Nested(Suggestion), required=True)
    selectionBehavior = fields.String(required=True, validate=validate.OneOf(["any"]))
    overrideReasons = fields.List(fields.Nested(CdsCoding), required=True)
    links = fields.List(fields.Nested(CardLink), required=True)


class CdsResponse(StrictSchema):
    cards = fields.List(fields.Nested(Card), required=True, metadata={"description": "Empty when nothing to say."})


class OperationOutcomeIssue(StrictSchema):
    severity = fields.String(required=True)
    code = fields.String(required=True)
    diagnostics = fields.String()
    expression = fields.List(fields.String())


class OperationOutcome(StrictSchema):
    resourceType = fields.String(required=True, validate=validate.OneOf(["OperationOutcome"]))
    issue = fields.List(fields.Nested(OperationOutcomeIssue), required=True)
