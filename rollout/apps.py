from django.apps import AppConfig


class RolloutConfig(AppConfig):
    name = "rollout"
    verbose_name = "Rollout and governance"

    def ready(self) -> None:
        from accounts import people
        from rollout.access import agent_rights_of_people

        # The People page (accounts) lists each person's per-agent rights, which rollout owns.
        people.register_agent_rights_reader(agent_rights_of_people)
