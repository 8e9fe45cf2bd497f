"""Exact cosine top-k: a gallery of a phone's photos (tens of thousands) needs no ANN index."""
from __future__ import annotations

import numpy as np


def top_k(query: np.ndarray, vectors: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k rows of `vectors` most similar to `query`, best first, as (row, cosine score).

    Both sides are unit vectors, so the dot product is the cosine. Fewer than k rows give all
    of them; an empty gallery or k <= 0 gives [].
    """
    if k <= 0 or len(vectors) == 0:
        return []
    query = np.asarray(query, np.float32).reshape(-1)
    if vectors.shape[1] != query.shape[0]:
        raise ValueError(f"query has {query.shape[0]} dimensions, the index {vectors.shape[1]}")
    scores = vectors @ query
    k = min(k, len(scores))
    best = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    # Ties keep row order (sorted rows, stable sort) so results are reproducible.
    best = np.sort(best)
    best = best[np.argsort(-scores[best], kind="stable")]
    return [(int(i), float(scores[i])) for i in best]
