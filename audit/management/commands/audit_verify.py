from django.core.management.base import BaseCommand, CommandError

from audit.chain import verify_chain


class Command(BaseCommand):
    help = "Verify the audit hash chain; exit 1 naming the first broken event."

    def handle(self, *args, **options) -> None:
        result = verify_chain()
        if result.ok:
            self.stdout.write(f"chain intact: {result.events} events")
            return
        raise CommandError(
            f"chain broken at event {result.first_broken_id}: {result.problem}", returncode=1
        )
