"""How big each scenario is, in full and in quick mode."""

from __future__ import annotations

from dataclasses import dataclass

SCENARIOS = (
    "throughput",
    "create",
    "cancel",
    "contention",
    "scale",
    "writes",
    "memory",
    "peers",
)


@dataclass(frozen=True)
class Plan:
    quick: bool
    repetitions: int  # of every timed figure; the table shows their median
    throughput_seconds: float  # each throughput repetition lasts at least this long
    latency_samples: int  # create -> start samples per repetition
    cancel_samples: int  # cancels per repetition
    contention_creators: int  # concurrent creators on one thread
    contention_processes: int  # the creators are spread over this many processes
    contention_decisions: int  # decisions per creator
    scale_small: int  # rows in `runs` for the small history
    scale_large: int  # rows in `runs` for the large history
    scale_samples: int  # create and list_by_thread calls per history size
    writes_runs: int  # runs whose statements are counted
    memory_small: int  # runs before the first memory reading
    memory_large: int  # runs before the second
    memory_large_embedded: int = 0  # the same on the embedded backend (0: memory_large)
    warmup_runs: int = 40  # throughput warm-up, which also sizes the timed repetitions
    peer_producers: int = 8  # producer threads of the peers' threaded load
    peer_latency_samples: int = 100  # single submits per system and repetition
    peer_create_many: int = 10_000  # runs in one create_many() call, tasks in one publish loop
    peer_connection_creates: int = 1_000  # create() calls per connection count
    peer_connection_threads: tuple[int, ...] = (8, 64)  # producer threads of each count

    @classmethod
    def full(cls) -> Plan:
        return cls(
            quick=False,
            repetitions=3,
            throughput_seconds=5.0,
            latency_samples=60,
            cancel_samples=6,
            contention_creators=50,
            contention_processes=10,
            contention_decisions=4,
            scale_small=1_000,
            scale_large=1_000_000,
            scale_samples=50,
            writes_runs=50,
            memory_small=1_000,
            memory_large=8_000,
            memory_large_embedded=2_000,
        )

    def memory_runs(self, backend: str) -> tuple[int, int]:
        large = self.memory_large
        if backend == "embedded" and self.memory_large_embedded:
            large = self.memory_large_embedded
        return self.memory_small, large

    @classmethod
    def quick_plan(cls) -> Plan:
        return cls(
            quick=True,
            repetitions=1,
            throughput_seconds=0.5,
            latency_samples=8,
            cancel_samples=2,
            contention_creators=50,
            contention_processes=2,
            contention_decisions=1,
            scale_small=1_000,
            scale_large=10_000,
            scale_samples=10,
            writes_runs=5,
            memory_small=20,
            memory_large=60,
            warmup_runs=20,
            peer_latency_samples=10,
            peer_create_many=200,
            peer_connection_creates=100,
        )
