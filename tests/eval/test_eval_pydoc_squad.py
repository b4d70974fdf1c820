"""The shipped pydoc-squad set: valid SQuAD offsets, contexts copied verbatim from the demo corpus, enough of both."""

from __future__ import annotations

import json
import sys
from collections import Counter

import pytest

from ragjet.eval.datasets import BUILTIN_DATASETS, load_dataset
from ragjet.ingest.demo import demo_markdown

SET = json.loads(BUILTIN_DATASETS["pydoc-squad"].read_text(encoding="utf-8"))
PARAGRAPHS = [(article["title"], p) for article in SET["data"] for p in article["paragraphs"]]


def test_every_answer_start_points_at_its_answer():
    for _, paragraph in PARAGRAPHS:
        for qa in paragraph["qas"]:
            for answer in qa["answers"]:
                start = answer["answer_start"]
                assert paragraph["context"][start : start + len(answer["text"])] == answer["text"], qa["id"]


def test_every_context_is_a_paragraph_of_its_topic_in_the_demo_corpus():
    topics = demo_markdown()
    missing = [title for title, p in PARAGRAPHS if p["context"] not in topics.get(title, "")]
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if missing and running != SET["pydoc_python"]:
        pytest.skip(f"pydoc-squad was copied from Python {SET['pydoc_python']}'s pydoc_data.topics; on {running} "
                    f"{len(missing)} of {len(PARAGRAPHS)} contexts differ (topics {sorted(set(missing))})")  # fmt: skip
    assert not missing


def test_size_topics_and_distractors():
    dataset = load_dataset("pydoc-squad")
    paragraphs_per_topic = Counter(title for title, _ in PARAGRAPHS)
    assert len(dataset.queries) >= 200 and len({q.id for q in dataset.queries}) == len(dataset.queries)
    assert len(paragraphs_per_topic) >= 40
    assert sum(n >= 2 for n in paragraphs_per_topic.values()) >= 40  # most topics bring their own distractors
    assert len({p["context"] for _, p in PARAGRAPHS}) == len(PARAGRAPHS)  # no paragraph twice
    assert all(len(answer) <= 100 for q in dataset.queries for answer in q.answers)  # short extractive spans
