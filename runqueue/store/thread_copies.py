"""Copying a thread (POST /threads/{id}/copy): a new thread with the same metadata, state and
history, none of its runs. One transaction copies the thread row, its rows in LangGraph's
tables (every column as the saver made it, the thread id replaced) and its plain
checkpoints (their run left out: the copy has no runs), under the source's lock, refused
while a run of it is in flight (a superstep half written is no state to copy).
"""

from __future__ import annotations

from sqlalchemy import Connection, func, insert, inspect, literal, null, select, text

from runqueue.errors import ThreadBusyError
from runqueue.records import ThreadRecord
from runqueue.store.models import CheckpointRow, Run, Thread
from runqueue.store.rows import THREAD_COLUMNS, thread_record
from runqueue.store.thread_retention import graph_tables
from runqueue.store.transactions import IS_INFLIGHT, StoreBase, db_now

THREAD_COPIED = ["thread_id", "user_id", "metadata", "created_at", "updated_at"]


def copy_graph_rows(conn: Connection, source_id: str, copy_id: str) -> None:
    """The source's rows in each of LangGraph's tables, again under the copy's id."""
    quote = conn.dialect.identifier_preparer.quote
    for table in sorted(graph_tables(conn)):
        columns = [column["name"] for column in inspect(conn).get_columns(table)]
        others = [quote(name) for name in columns if name != "thread_id"]
        conn.execute(
            text(
                f"INSERT INTO {table} (thread_id, {', '.join(others)}) "
                f"SELECT :copy, {', '.join(others)} FROM {table} WHERE thread_id = :source"
            ),
            {"copy": copy_id, "source": source_id},
        )


class ThreadCopies(StoreBase):
    def copy_thread(self, source_id: str, copy_id: str, user_id: str | None) -> ThreadRecord:
        """A new thread `copy_id` with the source's metadata and state, owned by `user_id`
        (None: the source's owner). ThreadNotFoundError if the source is not this user's;
        ThreadBusyError while a run of it is in flight."""
        with self.transaction() as conn:
            self.lock_thread(conn, source_id, user_id, create=False, owned=True)
            busy = select(Run.run_id).where(Run.thread_id == source_id, IS_INFLIGHT).limit(1)
            if conn.execute(busy).first() is not None:
                raise ThreadBusyError(
                    f"thread {source_id} has a run in flight: copy it once the run has ended"
                )
            source = select(
                literal(copy_id),
                func.coalesce(literal(user_id, Thread.user_id.type), Thread.user_id),
                Thread.metadata_,
                db_now(),
                db_now(),
            ).where(Thread.thread_id == source_id)
            row = conn.execute(
                insert(Thread.__table__)
                .from_select(THREAD_COPIED, source)
                .returning(*THREAD_COLUMNS)
            ).one()
            copy_graph_rows(conn, source_id, copy_id)
            checkpoints = (
                select(literal(copy_id), null(), CheckpointRow.values, CheckpointRow.created_at)
                .where(CheckpointRow.thread_id == source_id)
                .order_by(CheckpointRow.checkpoint_id)  # the copies' ids in the same order
            )
            conn.execute(
                insert(CheckpointRow.__table__).from_select(
                    ["thread_id", "run_id", "values", "created_at"], checkpoints
                )
            )
        return thread_record(row)
