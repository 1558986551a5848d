"""The one shape of a refusal raised by the write paths (``approvals.actions``,
``rollout.actions``, ``rollout.governance`` …) and turned into an HTTP answer by the API
and the pages."""

from __future__ import annotations


class Refused(Exception):
    """A request the rules refuse: a stable ``code``, a human ``detail``, the HTTP ``status``
    the API answers with, and field-level problems in ``fields`` (empty when none)."""

    def __init__(
        self, code: str, detail: str, status: int = 409, fields: dict | None = None
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status
        self.fields = fields or {}
