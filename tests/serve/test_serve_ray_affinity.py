"""Chunk-affinity keys on real prompts from the prompt builder, and rendezvous ranking against a brute-force oracle."""

from __future__ import annotations

import hashlib

import pytest

pytest.importorskip("ray.serve", reason="Ray Serve is the optional extra ragjet[ray]")

from ragjet.rag.prompt import PromptBuilder
from ragjet.serve.rayserve.affinity import affinity_key, rank_replicas
from support.hits import Hit

SYSTEM = "Answer only from the numbered sources and cite them as [n]."


FRESNEL = Hit("a", "Fresnel designed the lens in 1822.", 0.9, source="lighthouse.md")
ETNA = Hit("b", "Etna is on Sicily and erupts often.", 0.8, source="volcano.md")
BREAD = Hit("c", "Sourdough rises with wild yeast.", 0.7, source="bread.md")


def test_prompts_sharing_their_first_source_share_a_key(chat_tokenizer) -> None:
    builder = PromptBuilder(chat_tokenizer, SYSTEM, max_model_len=2048)

    def key(question: str, hits: list[Hit]) -> str:
        return affinity_key(builder.build(question, hits, max_tokens=32, max_chunks=4).text)

    same_first = key("Who designed the lens?", [FRESNEL, ETNA]), key("When was it built?", [FRESNEL, BREAD])
    assert same_first[0] == same_first[1]
    best_etna = Hit("b", ETNA.text, 0.95, source=ETNA.source)
    assert key("Who designed the lens?", [best_etna, FRESNEL]) != same_first[0]  # another best source, another key
    only_one = key("Who designed the lens?", [FRESNEL]), key("When was it built?", [FRESNEL])
    assert only_one[0] == only_one[1]  # one source: the key ends where the question begins


def test_a_prompt_without_sources_is_keyed_on_its_opening() -> None:
    assert affinity_key("hello " * 2000) == affinity_key("hello " * 2000 + "and more")
    assert affinity_key("hello") != affinity_key("goodbye")


def oracle_preferred(key: str, replica_ids: list[str]) -> str:
    """Highest-random-weight choice, by brute force over every replica."""
    best, best_weight = "", b""
    for replica_id in replica_ids:
        weight = hashlib.blake2b(f"{key}/{replica_id}".encode(), digest_size=8).digest()
        if weight > best_weight:
            best, best_weight = replica_id, weight
    return best


def test_ranking_prefers_the_oracles_replica_and_moves_only_a_leaving_replicas_keys() -> None:
    replicas = [f"replica-{i}" for i in range(4)]
    keys = [affinity_key(f"Sources:\n\n[1] doc{i}.md\ntext {i}") for i in range(400)]
    before = {k: rank_replicas(k, replicas) for k in keys}
    for k, ranking in before.items():
        assert sorted(ranking) == sorted(replicas) and ranking[0] == oracle_preferred(k, replicas)
    counts = {r: sum(ranking[0] == r for ranking in before.values()) for r in replicas}
    assert min(counts.values()) > 60  # 400 keys spread over 4 replicas (100 each expected)
    survivors = replicas[1:]
    for k, ranking in before.items():
        after = rank_replicas(k, survivors)
        # A key keeps its replica unless that replica left; then it goes to its own second choice.
        assert after == [r for r in ranking if r != replicas[0]]
