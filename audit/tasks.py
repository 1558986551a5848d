from celery import shared_task

from audit.chain import write_checkpoint as write_chain_checkpoint


@shared_task
def write_checkpoint() -> int:
    """Join the per-agent chains with a global checkpoint event."""
    return write_chain_checkpoint().pk
