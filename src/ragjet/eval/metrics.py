"""Quality metrics as pure functions: retrieval (recall, MRR, nDCG), answers (SQuAD EM/F1).

Retrieval metrics follow the trec_eval/BEIR definitions: a document is relevant when its qrels grade
is above 0; nDCG uses the linear gain ``grade / log2(rank + 1)`` and an ideal ranking built from all
judged documents of the query, retrieved or not. Answer metrics follow the official SQuAD v1.1
script: normalise (lowercase, drop punctuation and the articles a/an/the, collapse whitespace), then
exact match and token-overlap F1, each taking the best over the gold answers.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

Qrels = Mapping[str, int]  # document id → relevance grade for one query


def recall_at_k(ranked: Sequence[str], qrels: Qrels, k: int) -> float:
    """Share of the query's relevant documents found in the first `k` of `ranked`; 0 if none are relevant."""
    relevant = {doc for doc, grade in qrels.items() if grade > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def mrr_at_k(ranked: Sequence[str], qrels: Qrels, k: int) -> float:
    """1 / rank of the first relevant document within the first `k`, else 0."""
    for rank, doc in enumerate(ranked[:k], start=1):
        if qrels.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], qrels: Qrels, k: int) -> float:
    """Normalised discounted cumulative gain of the first `k` with graded relevance; 0 if none are relevant."""
    ideal = sorted((grade for grade in qrels.values() if grade > 0), reverse=True)[:k]
    ideal_dcg = _dcg(ideal)
    if ideal_dcg == 0:
        return 0.0
    return _dcg([max(qrels.get(doc, 0), 0) for doc in ranked[:k]]) / ideal_dcg


def _dcg(grades: Sequence[int]) -> float:
    return sum(grade / math.log2(rank + 1) for rank, grade in enumerate(grades, start=1))


def unique_in_order(ids: Sequence[str]) -> list[str]:
    """Drop repeats keeping first occurrences: chunk hits → a ranked list of distinct documents."""
    return list(dict.fromkeys(ids))


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, remove punctuation, remove articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold_answers: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer."""
    predicted = normalize_answer(prediction)
    return float(any(predicted == normalize_answer(gold) for gold in gold_answers))


def token_f1(prediction: str, gold_answers: Sequence[str]) -> float:
    """Best bag-of-tokens F1 between the normalised prediction and each gold answer."""
    return max((_f1(prediction, gold) for gold in gold_answers), default=0.0)


def _f1(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def answer_contained(prediction: str, gold_answers: Sequence[str]) -> float:
    """1.0 if any non-empty normalised gold answer appears inside the normalised prediction.

    Generative answers are sentences, not spans, so exact match undercounts them; this is the
    lenient figure next to it.
    """
    predicted = f" {normalize_answer(prediction)} "
    return float(any(norm and f" {norm} " in predicted for norm in map(normalize_answer, gold_answers)))


CORRECT_F1 = 0.5  # an answer counts as right when its token F1 reaches this, or it contains a gold answer


def is_correct(prediction: str, gold_answers: Sequence[str]) -> bool:
    """The right/wrong label that confidence is judged against."""
    return token_f1(prediction, gold_answers) >= CORRECT_F1 or answer_contained(prediction, gold_answers) == 1.0


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve: the chance that a random right answer scores above a random wrong one
    (ties count half). None unless both right and wrong answers are present. Computed from ranks
    (Mann-Whitney U), with tied scores given their average rank."""
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    num_right = sum(labels)
    num_wrong = len(labels) - num_right
    if num_right == 0 or num_wrong == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1  # 1-based average rank of the tie group
        start = end + 1
    rank_sum = sum(rank for rank, right in zip(ranks, labels, strict=True) if right)
    return (rank_sum - num_right * (num_right + 1) / 2) / (num_right * num_wrong)
