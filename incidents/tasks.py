"""Celery tasks of the incident workflow. They take ids and call its actions."""

from celery import shared_task

from audit.chain import Actor
from incidents.drills import run_drill
from rollout.models import Agent


@shared_task
def run_drill_task(agent_id: int, actor_name: str) -> int:
    """Run a kill-switch drill of one agent in a worker (it takes a few seconds)."""
    drill = run_drill(agent=Agent.objects.get(pk=agent_id), actor=Actor.user_named(actor_name))
    return drill.pk
