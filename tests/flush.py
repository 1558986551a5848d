"""A cheaper way to empty the database after each transactional test (a pytest plugin,
listed in ``tests/conftest.py``).

Django empties every table after a transactional test with one ``TRUNCATE`` of all of them.
On PostgreSQL a TRUNCATE gives each table and index a new file, whether or not it held a
row: ~250 ms for this schema on the test machine, after each of ~300 tests. A ``DELETE``
of a table a test left (nearly) empty costs well under a millisecond. Every foreign key
Django creates is ``DEFERRABLE INITIALLY DEFERRED``, and the flush runs in one transaction,
so the tables can be emptied in any order. Neither way resets sequences (Django asks for
no reset here), so the next test sees the same database either way: every table empty.

Tables with a ``DELETE`` trigger are still truncated: the append-only audit log refuses
``DELETE`` (its trigger lets the test run TRUNCATE it; see the audit trigger migration).
"""

from __future__ import annotations

from django.db.backends.postgresql.operations import DatabaseOperations

_truncate_all = DatabaseOperations.sql_flush

# Tables with a row-level trigger on DELETE (pg_trigger.tgtype: bit 0 row-level, bit 3
# DELETE), and whether any foreign key points at them: TRUNCATE refuses a table referenced
# by one not truncated in the same statement.
_DELETE_TRIGGERS = """
    SELECT c.relname,
           EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.confrelid = c.oid)
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
    WHERE NOT t.tgisinternal AND t.tgtype & 1 = 1 AND t.tgtype & 8 = 8
"""


def _delete_then_truncate(
    self: DatabaseOperations,
    style,
    tables,
    *,
    reset_sequences: bool = False,
    allow_cascade: bool = False,
) -> list[str]:
    if not tables or reset_sequences or allow_cascade:
        return _truncate_all(
            self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
        )
    with self.connection.cursor() as cursor:
        cursor.execute(_DELETE_TRIGGERS)
        triggered = dict(cursor.fetchall())
    if any(triggered.values()):
        # A referenced table with a DELETE trigger: Django's own way is the safe one.
        return _truncate_all(self, style, tables)
    deleted = [table for table in tables if table not in triggered]
    truncated = [table for table in tables if table in triggered]
    return [f"DELETE FROM {self.quote_name(table)};" for table in deleted] + _truncate_all(
        self, style, truncated
    )


def pytest_configure() -> None:
    DatabaseOperations.sql_flush = _delete_then_truncate
