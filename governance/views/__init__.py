"""Governance pages, one module per page family: ``agents`` (list, registration, an agent's
page, a policy version), ``policy`` (tier, settings and tool-rule forms), ``tokens`` (agent
tokens and the webhook secret), ``access`` (per-agent rights), ``shadow`` (shadow labels)
and ``changes`` (change requests); ``common`` holds what they share. Thin views over
``rollout.selectors`` / ``governance.selectors`` (what a person may see) and
``governance.actions`` (every change). Someone who may not see an agent or a change request
gets 404; someone who may see it but not change it gets 403."""
