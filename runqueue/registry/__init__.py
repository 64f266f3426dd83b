"""The registry: RunManager, the public API, with the same surface as the in-memory registry it
replaces.

SyncRunManager holds the one implementation; RunManager's async methods are its twins, with
the same signatures, run in a worker thread so a database round trip never blocks the event
loop. One module per job: requests.py (what a caller asks for), checks.py (a request checked
before anything is written), unserved.py (the warning for an assistant no worker serves),
reading.py, joining.py, threads.py, thread_state.py (a thread's state, history and state
updates), sync_manager.py (SyncRunManager: creating, cancelling, finishing; every status
write a caller makes), async_manager.py (RunManager), store_items.py (StoreItems: the Store
per user).
"""

from __future__ import annotations

from runqueue.registry.async_manager import RunManager
from runqueue.registry.requests import RunOptions, RunRequest
from runqueue.registry.store_items import StoreItems
from runqueue.registry.sync_manager import SyncRunManager
from runqueue.registry.threads import MAX_PAGE, MAX_PRUNE_THREADS, MAX_TTL_MINUTES

__all__ = [
    "MAX_PAGE",
    "MAX_PRUNE_THREADS",
    "MAX_TTL_MINUTES",
    "RunManager",
    "RunOptions",
    "RunRequest",
    "StoreItems",
    "SyncRunManager",
]
