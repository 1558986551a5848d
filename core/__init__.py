"""The bottom layer: helpers every app may import and that import no app.

Errors and their mapping, the API base view, parsers, throttles, the active-person check,
safe redirects, token digests. Nothing here imports accounts, audit, rollout or approvals
(the import-linter contract in pyproject.toml enforces it)."""
