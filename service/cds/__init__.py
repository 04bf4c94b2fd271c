"""CDS Hooks 2.0 over the triage engine: plain Python, no web framework."""
