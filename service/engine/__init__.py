"""The triage engine: plain Python, no web framework, so a CLI, batch job or benchmark can call it."""

from service.engine.triage import evaluate

__all__ = ["evaluate"]
