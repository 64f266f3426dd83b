"""A deterministic embedding for the Store's semantic-search tests (RUNQUEUE_STORE_EMBED=
tests.fake_embedding:embed, RUNQUEUE_STORE_EMBED_DIMS=DIMS): each word of a text adds one to
the axis its CRC-32 names, so texts that share words point the same way and the nearest item
to a query is the one that shares most of its words."""

from __future__ import annotations

import zlib

DIMS = 16


def embed(texts: list[str]) -> list[list[float]]:
    vectors = []
    for text in texts:
        vector = [0.0] * DIMS
        for word in text.lower().split():
            vector[zlib.crc32(word.encode()) % DIMS] += 1.0
        vectors.append(vector if any(vector) else [1.0] + [0.0] * (DIMS - 1))
    return vectors
