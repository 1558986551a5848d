"""The auditor's console: the audit log's pages (``/audit``…), its read-only API
(``/api/v1/audit/…``) and who may read which part of it. It reads every domain (actions,
agents, policy versions) to decide and to show, so it sits on top of them; the log it reads
(``audit.models``, ``audit.chain``, ``audit.search``, ``audit.export``, …) imports no domain
app. URL paths and names are the same as when this lived in ``audit/`` itself."""
