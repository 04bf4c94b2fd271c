"""Build the CDS Hooks parts from configuration once per process (plain Python, no Flask)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from service.auth.replay import open_store
from service.auth.tokens import TokenVerifier, load_trust_file
from service.cds.fhir_out import OWN_SYSTEM
from service.cds.fhir_reader import FhirReader
from service.cds.mapping import Mapping, MappingError, load_mapping
from service.engine.model import KnowledgeBase


def as_list(value: Any) -> list[str]:
    """A list setting given as a list (JSON in the environment) or a comma-separated string."""
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value or "").split(",") if part.strip()]


@dataclass(frozen=True)
class CdsState:
    mapping: Mapping
    verifier: TokenVerifier | None  # None only when CDS_AUTH_DISABLED
    reader: FhirReader
    max_age: timedelta  # exam Observations older than this are reported, not used
    issuers: int
    fhir_budget: float  # seconds a call may spend reading FHIR servers, in all


def build_cds(kb: KnowledgeBase, config: dict[str, Any]) -> CdsState:
    mapping = load_mapping(kb, config["CDS_MAPPING_FILE"] or None)
    if mapping.own_system != OWN_SYSTEM:
        raise MappingError(f"systems.triage must stay {OWN_SYSTEM}: sites add aliases for their own systems")
    verifier = None
    issuers = load_trust_file(config["CDS_TRUST_FILE"]) if config["CDS_TRUST_FILE"] else []
    if not config["CDS_AUTH_DISABLED"]:
        verifier = TokenVerifier(
            issuers,
            leeway=config["CDS_JWT_LEEWAY_SECONDS"],
            max_lifetime=config["CDS_JWT_MAX_LIFETIME_SECONDS"],
            jwks_ttl=config["CDS_JWKS_CACHE_SECONDS"],
            replay_store=open_store(config["REPLAY_STORE"]),
        )
    reader = FhirReader(
        as_list(config["CDS_FHIR_HOSTS"]),
        allow_http=config["CDS_FHIR_ALLOW_HTTP"],
        timeout=config["CDS_FHIR_TIMEOUT_SECONDS"],
        max_concurrent=config["CDS_FHIR_MAX_CONCURRENT"],
    )
    max_age = timedelta(days=config["CDS_MAX_OBSERVATION_AGE_DAYS"])
    return CdsState(mapping, verifier, reader, max_age, len(issuers), config["CDS_FHIR_DEADLINE_SECONDS"])
