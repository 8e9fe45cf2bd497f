"""Retrieval metrics for one query's ranking of the whole photo set, and their means.

A ranking is the photos sorted by score, best first (ties keep photo order); `relevant[i]`
says whether the i-th ranked photo shows the query's class. Definitions (as in sketch-based
image retrieval papers, e.g. Sketchy / TU-Berlin evaluations):

- AP: the mean, over the relevant photos, of the precision at each one's rank; mAP is its mean
  over queries. Undefined (NaN) for a query whose class has no photos.
- P@k: the share of the top k that is relevant. When the set holds fewer than k photos, k is
  the set's size (the whole ranking).
- acc@k (what SBIR papers call recall@k / top-k accuracy): 1 when at least one relevant photo
  is in the top k, else 0; its mean is the share of queries that find their class in the top k.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np


def rank(scores: np.ndarray) -> np.ndarray:
    """Photo indices, best score first; equal scores keep photo order (reproducible)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def average_precision(relevant: Sequence[bool] | np.ndarray) -> float:
    relevant = np.asarray(relevant, dtype=bool)
    hits = np.flatnonzero(relevant)
    if hits.size == 0:
        return math.nan
    # The (j+1)-th relevant photo sits at rank hits[j] + 1: precision there is (j+1) / (hits[j]+1).
    return float(np.mean(np.arange(1, hits.size + 1) / (hits + 1)))


def precision_at(relevant: Sequence[bool] | np.ndarray, k: int) -> float:
    relevant = np.asarray(relevant, dtype=bool)
    k = min(k, relevant.size)
    return float(relevant[:k].sum() / k) if k > 0 else math.nan


def hit_at(relevant: Sequence[bool] | np.ndarray, k: int) -> float:
    """acc@k: 1.0 when a relevant photo is in the top k."""
    return float(np.asarray(relevant, dtype=bool)[:k].any())


def metric_names(precision_ks: Iterable[int], hit_ks: Iterable[int]) -> list[str]:
    return ["mAP", *(f"P@{k}" for k in precision_ks), *(f"acc@{k}" for k in hit_ks)]


def query_metrics(scores: np.ndarray, labels: Sequence[str] | np.ndarray, query_label: str,
                  precision_ks: Iterable[int] = (100, 200),
                  hit_ks: Iterable[int] = (1, 5, 10)) -> dict[str, float]:
    """The metrics of one query: `scores` and `labels` have one entry per photo."""
    order = rank(scores)
    relevant = np.asarray(labels)[order] == query_label
    result = {"mAP": average_precision(relevant)}
    result.update({f"P@{k}": precision_at(relevant, k) for k in precision_ks})
    result.update({f"acc@{k}": hit_at(relevant, k) for k in hit_ks})
    return result


def mean_metrics(per_query: Sequence[dict[str, float]], names: Sequence[str]) -> dict[str, float | None]:
    """The mean of each metric over queries (NaNs left out); None where no query has a value."""
    means: dict[str, float | None] = {}
    for name in names:
        values = [q[name] for q in per_query if name in q and not math.isnan(q[name])]
        means[name] = float(np.mean(values)) if values else None
    return means
