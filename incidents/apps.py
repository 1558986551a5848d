from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    name = "incidents"
    verbose_name = "Incidents"

    def ready(self) -> None:
        from approvals import hooks
        from incidents.breakers import check_circuit_breaker
        from incidents.drills import probe_call

        # Approvals sits below the incident workflow: it reaches the circuit breaker and the
        # drill probe only through these hooks.
        hooks.after_counted_outcome.connect(check_circuit_breaker)
        hooks.drill_probe_call.connect(probe_call)
