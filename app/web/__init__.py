"""Flask and HTTP glue: the blueprint class, request hooks, JSON, JWT wiring,
OpenAPI helpers, idempotency. See docs/ARCHITECTURE.md."""
