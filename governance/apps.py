from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self) -> None:
        from accounts import people
        from approvals.kept_cases import may_keep_case
        from governance.access import agent_rights_of_people, live_access
        from governance.permissions import can_keep_case
        from rollout.snapshots import current_access

        # Every policy snapshot records who holds which per-agent right; access is ours.
        current_access.connect(live_access)
        # The People page (accounts) lists each person's per-agent rights, which we grant.
        people.register_agent_rights_reader(agent_rights_of_people)
        # The trace and the incident page offer "keep as a case": the rule is ours.
        may_keep_case.connect(can_keep_case)
