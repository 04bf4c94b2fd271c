"""Who may call the service: API keys and bearer JWTs for /v1 (policy), CDS Hooks client JWTs
(tokens, with the replay store), and the Flask side that applies them per route (guard)."""
