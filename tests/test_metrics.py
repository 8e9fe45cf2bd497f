"""Retrieval metrics on hand-made rankings whose values are worked out by hand."""
import math

import numpy as np
import pytest

from tools.retrieval_metrics import (
    average_precision,
    hit_at,
    mean_metrics,
    metric_names,
    precision_at,
    query_metrics,
    rank,
)

# Relevant at ranks 1, 3 and 6 of 6: AP = (1/1 + 2/3 + 3/6) / 3 = 13/18.
FIRST_HIT = [True, False, True, False, False, True]
# Relevant at ranks 3 and 4 of 4: AP = (1/3 + 2/4) / 2 = 5/12.
LATE_HITS = [False, False, True, True]


def test_average_precision_by_hand():
    assert average_precision(FIRST_HIT) == pytest.approx(13 / 18)
    assert average_precision(LATE_HITS) == pytest.approx(5 / 12)
    assert average_precision([True, True, False]) == 1.0
    assert average_precision([False, False, False, True]) == pytest.approx(1 / 4)
    assert math.isnan(average_precision([False, False]))  # no relevant photo: undefined


def test_precision_at_k_by_hand():
    assert precision_at(FIRST_HIT, 1) == 1.0
    assert precision_at(FIRST_HIT, 2) == 0.5
    assert precision_at(FIRST_HIT, 3) == pytest.approx(2 / 3)
    assert precision_at(FIRST_HIT, 5) == pytest.approx(2 / 5)
    assert precision_at(LATE_HITS, 2) == 0.0
    # Fewer photos than k: k is the whole ranking (2 relevant of 4).
    assert precision_at(LATE_HITS, 100) == 0.5


def test_acc_at_k_is_a_relevant_photo_in_the_top_k():
    assert hit_at(FIRST_HIT, 1) == 1.0
    assert [hit_at(LATE_HITS, k) for k in (1, 2, 3, 4, 10)] == [0.0, 0.0, 1.0, 1.0, 1.0]


def test_query_metrics_ranks_the_scores():
    # Ranked: dog (0.9), cat (0.5), cat (0.3), cat (0.1) -> relevant at ranks 2, 3, 4.
    scores = np.array([0.1, 0.9, 0.5, 0.3])
    labels = ["cat", "dog", "cat", "cat"]
    result = query_metrics(scores, labels, "cat", precision_ks=(2, 100), hit_ks=(1, 2))
    assert list(result) == metric_names((2, 100), (1, 2)) == ["mAP", "P@2", "P@100", "acc@1", "acc@2"]
    assert result["mAP"] == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3)
    assert result["P@2"] == 0.5 and result["P@100"] == 0.75
    assert result["acc@1"] == 0.0 and result["acc@2"] == 1.0
    dog = query_metrics(scores, labels, "dog", precision_ks=(2,), hit_ks=(1,))
    assert dog == {"mAP": 1.0, "P@2": 0.5, "acc@1": 1.0}


def test_ties_keep_photo_order():
    assert rank(np.array([0.5, 0.5, 0.2, 0.5])).tolist() == [0, 1, 3, 2]
    # dog first among the tied photos: cat at ranks 2 and 3 -> AP = (1/2 + 2/3) / 2.
    result = query_metrics(np.array([0.5, 0.5, 0.2]), ["dog", "cat", "cat"], "cat", (2,), (1,))
    assert result["mAP"] == pytest.approx(7 / 12)


def test_means_leave_out_undefined_values():
    rows = [{"mAP": 0.5, "acc@1": 1.0}, {"mAP": math.nan, "acc@1": 0.0}, {"mAP": 0.25, "acc@1": 0.0}]
    assert mean_metrics(rows, ["mAP", "acc@1"]) == {"mAP": 0.375, "acc@1": pytest.approx(1 / 3)}
    assert mean_metrics([{"mAP": math.nan}], ["mAP"]) == {"mAP": None}
    assert mean_metrics([], ["mAP"]) == {"mAP": None}
