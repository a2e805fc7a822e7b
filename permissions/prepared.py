"""Server-bound, prepared execution for the few statements every request runs.

Django binds parameters on the client (psycopg ``ClientCursor``): any number of them, and never a
prepared statement. The need-to-know statements (``permissions.access``: a pupil's items, the
decision on one item; ``permissions.audit``: the append) are long and the same text every call, and
PostgreSQL spent more time planning them than running them. Inside ``server_bound()`` the current
connection's cursors bind on the server instead, so psycopg prepares a statement once the
connection has run it ``prepare_threshold`` times (``config/settings/base.py``) and the server plans
it once per connection.

Only statements with a bounded number of parameters belong here: the server accepts at most 65,535
(a client-bound ``IN`` list has no such limit). Elsewhere (SQLite) it changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections
from django.db.models import QuerySet


@contextmanager
def server_bound(using: str = "default") -> Iterator[None]:
    """Cursors opened inside bind their parameters on the server (and are prepared when repeated)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        yield
        return
    # Defined by Django for psycopg 3 only (the stubs do not know it); the project requires psycopg 3.
    from django.db.backends.postgresql.base import ServerBindingCursor  # type: ignore[attr-defined]

    connection.ensure_connection()
    raw = connection.connection
    previous = raw.cursor_factory
    raw.cursor_factory = ServerBindingCursor
    try:
        yield
    finally:
        if connection.connection is raw:  # not replaced by a reconnect meanwhile
            raw.cursor_factory = previous


class ServerBoundQuerySet(QuerySet):
    """A queryset whose own reads run server-bound (``server_bound``); chained querysets keep the class.

    Used as a subquery of another queryset it is compiled into the outer statement, bound as that one is;
    ``iterator()`` stays client-bound (other statements may run while it is consumed).
    """

    def _fetch_all(self) -> None:
        with server_bound(self.db):
            super()._fetch_all()

    def count(self) -> int:
        with server_bound(self.db):
            return super().count()

    def exists(self) -> bool:
        with server_bound(self.db):
            return super().exists()
