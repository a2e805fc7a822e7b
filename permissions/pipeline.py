"""PostgreSQL: the read of one item as one libpq pipeline, with its commit sent before decryption.

``permissions.access.item_reading`` sends a read's statements here, on the connection's libpq handle
(``psycopg.pq``, psycopg's documented low-level interface), not through Django's or psycopg's cursors:

- The chain head's lock, the decision and the key fetch, then a flush request: their answers come back in
  one round trip.
- Right behind them, not waited for: the event's append and a ``Sync``. The statements run in the
  pipeline's implicit transaction, so the ``Sync`` is its commit: no ``BEGIN`` or ``COMMIT`` statement, and
  the head stays locked from before the decision until the event is durable. The server inserts and
  flushes the WAL while the caller decrypts; ``finish`` waits for the answer and raises if the append or
  the commit failed.

Why not psycopg's ``Connection.pipeline()``: it cannot send a ``Sync`` without waiting for every answer, so
the transaction needed its own ``BEGIN`` and ``COMMIT``, and each statement cost a cursor and a pass through
psycopg's execute path. That was about a third of what the audit added to a read (docs/performance.md).
Here each statement is a ``Bind``/``Execute`` of a statement prepared once per connection, with its values
dumped and its rows loaded by psycopg's ``Transformer`` on the connection's adapters, as a cursor does.

The connection is handed back as it came, idle, in autocommit, out of pipeline mode. An SQL error leaves
it clean: the pipeline is drained to its ``Sync`` and the implicit transaction is rolled back. Anything else
that interrupts the protocol (a lost connection, an exception or interrupt while waiting, an interrupt in the
caller's block) closes Django's connection, so the next statement opens a new one and never reads a stale
answer.
"""

from __future__ import annotations

import itertools
import os
import re
import select
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.db import connection
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer

_ExecStatus = pq.ExecStatus
_OK = (_ExecStatus.TUPLES_OK, _ExecStatus.COMMAND_OK)

# A prepared statement's name, unique to this process (its pid) and never reused, so a statement the server
# still has can never be mistaken for another, even behind a pooler that hands a session to another process.
# psycopg names its own "_pg3_<n>".
_NAMES = itertools.count(1)

# Per psycopg connection: (statement text, parameter types) -> the name it is prepared under on the server.
_PREPARED: weakref.WeakKeyDictionary[Any, dict[tuple[str, tuple[int, ...]], bytes]] = weakref.WeakKeyDictionary()
_PREPARED_MAX = 64  # statements beyond this many per connection run unprepared

# A statement that the server no longer has: psycopg sends DEALLOCATE ALL after a ROLLBACK, for its own
# statements and ours alike.
_NO_SUCH_STATEMENT = "26000"

_PLACEHOLDER = re.compile(r"%(.|$)", re.DOTALL)


def _numbered(sql: str) -> bytes:
    """``sql`` with Django's ``%s`` placeholders numbered as the server wants them (``$1``, ``$2`` ...) and
    ``%%`` unescaped; any other ``%`` is an error."""
    return _NUMBERED.get(sql) or _number(sql)


_NUMBERED: dict[str, bytes] = {}


def _number(sql: str) -> bytes:
    count = itertools.count(1)

    def placeholder(match: re.Match[str]) -> str:
        if match.group(1) == "s":
            return f"${next(count)}"
        if match.group(1) == "%":
            return "%"
        raise ValueError(f"unsupported placeholder %{match.group(1)} in a pipelined statement")

    numbered = _PLACEHOLDER.sub(placeholder, sql).encode()
    if len(_NUMBERED) < 256:
        _NUMBERED[sql] = numbered
    return numbered


def _error_of(result: pq.abc.PGresult, encoding: str) -> psycopg.Error:
    """The exception psycopg raises for an error ``result``, built with its documented API: the class of the
    result's SQLSTATE (``psycopg.errors.lookup``; a code this psycopg does not know gives ``DatabaseError``),
    with the server's primary message (its detail and hint stay in ``diag``, from the result)."""
    state = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode("utf-8", "replace")
    try:
        kind = psycopg.errors.lookup(state)
    except KeyError:
        kind = psycopg.DatabaseError
    message = result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or result.error_message or b"no error details"
    return kind(message.decode(encoding, "replace"), info=result, encoding=encoding)


@dataclass
class _Sent:
    """One message the server will answer, in the order sent."""

    kind: str  # "prepare", "query" or "sync"
    sql: str = ""
    key: tuple[str, tuple[int, ...]] | None = None
    started: float = field(default_factory=time.perf_counter)


class ReadPipeline:
    """One read's statements in one libpq pipeline and its implicit transaction (module docstring).

    ``fetch`` sends statements and a flush request and returns their rows, one round trip; with ``then``, the
    statements it returns and the ``Sync`` go right behind, not waited for; ``finish`` waits for what is
    outstanding and raises the first error, as Django's ``DatabaseError``. ``fetch(..., commit=True)`` ends
    with the ``Sync`` instead: the rows and the commit in one round trip (the benchmark's read without audit).
    """

    def __init__(self) -> None:
        connection.ensure_connection()
        self.raw = connection.connection
        self.pgconn = self.raw.pgconn
        if (
            self.pgconn.pipeline_status != pq.PipelineStatus.OFF
            or self.pgconn.transaction_status != pq.TransactionStatus.IDLE
        ):
            raise RuntimeError("a read's pipeline needs an idle connection in autocommit")
        self.tx = self._transformer()
        # Prepared once per connection, unless preparing is off (LP_DB_PREPARED_STATEMENTS=false: a pooler that
        # cannot keep them), as psycopg's own prepare_threshold says.
        self.prepare = self.raw.prepare_threshold is not None
        self.prepared = _PREPARED.setdefault(self.raw, {})
        self.sent: list[_Sent] = []
        self.synced = False
        self.done = False
        self.logged = connection.queries_logged
        with connection.wrap_database_errors:
            self.pgconn.enter_pipeline_mode()

    def _transformer(self) -> Any:  # psycopg.abc.Transformer; psycopg.adapt's name is a run-time alias
        """Dumps and loads as Django's cursors on this connection do (its time zone's loader, as
        ``create_cursor`` registers it when the connection's differs)."""
        from django.db.backends.postgresql.psycopg_any import register_tzloader

        loader = self.raw.adapters.get_loader(psycopg.postgres.types["timestamptz"].oid, pq.Format.TEXT)
        if loader is not None and getattr(loader, "timezone", connection.timezone) != connection.timezone:
            context = psycopg.adapt.AdaptersMap(self.raw.adapters)
            holder = type("_Context", (), {"adapters": context, "connection": self.raw})()
            register_tzloader(connection.timezone, holder)
            return Transformer(holder)
        return Transformer(self.raw)

    # --- Sending -------------------------------------------------------------------------------

    def _send(self, sql: str, params: Sequence[Any]) -> None:
        query = _numbered(sql)
        if params:
            values = self.tx.dump_sequence(params, [PyFormat.AUTO] * len(params))
            types, formats = tuple(self.tx.types or ()), self.tx.formats
        else:
            values, types, formats = [], (), None
        key = (sql, types)
        name = self.prepared.get(key) if self.prepare else None
        if name is None and self.prepare and len(self.prepared) < _PREPARED_MAX:
            name = f"lp_{os.getpid()}_{next(_NAMES)}".encode()
            self.pgconn.send_prepare(name, query, param_types=types)
            self.sent.append(_Sent("prepare", sql, key))
            self.prepared[key] = name
        if name is None:
            self.pgconn.send_query_params(query, values, param_types=types, param_formats=formats)
        else:
            self.pgconn.send_query_prepared(name, values, param_formats=formats)
        self.sent.append(_Sent("query", sql))

    def _send_all(self, statements: Sequence[tuple[str, Sequence[Any]]], *, sync: bool) -> None:
        try:
            for sql, params in statements:
                self._send(sql, params)
            if sync:
                self.pgconn.pipeline_sync()
                self.sent.append(_Sent("sync"))
                self.synced = True
            else:
                self.pgconn.send_flush_request()
            self._flush()
        except BaseException:  # what was sent is not known: the connection cannot be trusted
            self._broken()
            raise

    # --- Answers -------------------------------------------------------------------------------

    def _wait(self, events: int) -> None:
        poller = select.poll()
        poller.register(self.pgconn.socket, events)
        poller.poll()

    def _flush(self) -> None:
        while self.pgconn.flush():
            self._wait(select.POLLIN | select.POLLOUT)
            self.pgconn.consume_input()

    def _result(self) -> pq.abc.PGresult | None:
        while self.pgconn.is_busy():
            self._wait(select.POLLIN)
            self.pgconn.consume_input()
        return self.pgconn.get_result()

    def _answer(self, sent: _Sent) -> tuple[list[Any], psycopg.Error | None]:
        """The rows of ``sent`` (a query) and the error it answered with, if any."""
        rows: list[Any] = []
        error: psycopg.Error | None = None
        aborted = False  # not run: an earlier statement of the flight failed
        ends = 0
        while True:
            result = self._result()
            if result is None:
                if self.pgconn.status == pq.ConnStatus.BAD:
                    raise psycopg.OperationalError("the connection was lost during a read's pipeline")
                ends += 1
                if sent.kind == "sync" and ends == 1:
                    continue  # the end of an error's results (a failed commit), before the Sync's own
                if sent.kind == "sync":
                    raise psycopg.InterfaceError("a read's pipeline ended without its Sync")
                break
            status = result.status
            if status == _ExecStatus.PIPELINE_SYNC:
                if sent.kind != "sync":
                    raise psycopg.InterfaceError("a read's pipeline answered a statement with its Sync")
                break
            if status == _ExecStatus.FATAL_ERROR:
                error = error or _error_of(result, self.raw.info.encoding)
            elif status == _ExecStatus.TUPLES_OK and sent.kind == "query":
                self.tx.set_pgresult(result)
                rows = self.tx.load_rows(0, result.ntuples, tuple)
            elif status == _ExecStatus.PIPELINE_ABORTED:
                aborted = True
            elif status not in _OK:
                raise psycopg.InterfaceError(f"unexpected answer in a read's pipeline: {_ExecStatus(status).name}")
        if sent.kind == "prepare" and (error is not None or aborted) and sent.key:
            self.prepared.pop(sent.key, None)  # not prepared: the next read prepares it
        if self.logged and sent.kind == "query":
            connection.queries_log.append(
                {"sql": sent.sql, "time": f"{time.perf_counter() - sent.started:.3f}"}  # as Django's debug cursor
            )
        return rows, error

    def _collect(self, queries: int | None = None) -> tuple[list[list[Any]], psycopg.Error | None]:
        """The outstanding answers (up to the answer of the ``queries``-th query, or all): the rows of each
        query, and the first error."""
        answers: list[list[Any]] = []
        first: psycopg.Error | None = None
        try:
            while self.sent and (queries is None or len(answers) < queries):
                sent = self.sent.pop(0)
                rows, error = self._answer(sent)
                first = first or error
                if sent.kind == "query":
                    answers.append(rows)
        except BaseException:  # the protocol was interrupted: its answers and our list no longer line up
            self._broken()
            raise
        return answers, first

    def _end(self) -> None:
        """Drain to the ``Sync`` (sending one if needed) and leave pipeline mode."""
        if not self.synced:
            self.pgconn.pipeline_sync()
            self.sent.append(_Sent("sync"))
            self.synced = True
            self._flush()
        self._collect()
        self.pgconn.exit_pipeline_mode()
        self.done = True

    def _broken(self) -> None:
        self.done = True
        connection.close()

    # --- The read's steps ------------------------------------------------------------------------

    def fetch(
        self,
        statements: Sequence[tuple[str, Sequence[Any]]],
        *,
        then: Callable[[], Sequence[tuple[str, Sequence[Any]]]] | None = None,
        commit: bool = False,
    ) -> list[list[Any]]:
        """Send ``statements`` and return their rows: one round trip.

        ``then``: once ``statements`` are on their way, the statements it returns are sent with the ``Sync``
        (the commit), and not waited for (``finish``). ``commit``: the ``Sync`` follows ``statements`` and is
        waited for too. A statement the server no longer has (deallocated) is prepared again, once."""
        with connection.wrap_database_errors:
            try:
                for attempt in (1, 2):
                    self._send_all(statements, sync=commit)
                    if then is not None:
                        self._send_all(then(), sync=True)
                    answers, error = self._collect(None if commit else len(statements))
                    if error is not None and error.sqlstate == _NO_SUCH_STATEMENT and attempt == 1:
                        self.prepared.clear()
                        self._end()
                        self.pgconn.enter_pipeline_mode()
                        self.done = self.synced = False
                        continue
                    if error is not None:
                        raise error
                    if commit:
                        self.pgconn.exit_pipeline_mode()
                        self.done = True
                    return answers
                raise AssertionError("unreachable")  # pragma: no cover
            except BaseException as exc:
                self.close(exc)
                raise

    def finish(self) -> None:
        """Wait for what is outstanding; raise the first error (Django's class). Once."""
        if self.done:
            return
        with connection.wrap_database_errors:
            if not self.synced:
                self._send_all((), sync=True)
            _answers, error = self._collect()
            try:
                self.pgconn.exit_pipeline_mode()
            except BaseException:
                self._broken()
                raise
            self.done = True
            if error is not None:
                raise error

    def close(self, exc: BaseException | None = None) -> None:
        """After an error elsewhere (``exc``): end the pipeline quietly (its implicit transaction rolls back
        unless the ``Sync`` had already been sent), or close the connection if even that fails. An interrupt
        (``KeyboardInterrupt``, ``SystemExit``: not an ``Exception``) closes it at once rather than waiting
        for the server."""
        if self.done:
            return
        if exc is not None and not isinstance(exc, Exception):
            self._broken()
            return
        try:
            self._end()
        except Exception:
            if not self.done:
                self._broken()
