"""The run stream: one interface, one module per transport (Redis Streams, SQL)."""

from runqueue.stream.run_stream import RunStream, open_stream
from runqueue.stream.transport import Appended, AppendOutcome

__all__ = ["AppendOutcome", "Appended", "RunStream", "open_stream"]
