"""The bundled knowledge base (YAML data with citations) and its loader."""

from service.knowledge.loader import KnowledgeError, load_knowledge

__all__ = ["KnowledgeError", "load_knowledge"]
