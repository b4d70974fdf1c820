"""The cross-encoder reranker on a tiny random-weight BertForSequenceClassification written by transformers (the
oracle): the same logits as transformers for question/passage pairs, scores independent of batching, the time
budget honoured, and the retriever reordering its candidates by them. No quality is claimed: the weights are random.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ragjet.config import RetrieveSettings
from ragjet.retrieve.cross_encoder import CrossEncoder

QUESTION = "Which volcano is on Sicily?"
PASSAGES = ["Mount Etna on Sicily erupts often.", "Sourdough rises because wild yeast ferments the dough.",
            "A Fresnel lens focuses the lamp of a lighthouse into a beam that ships see from far away.",
            "Basaltic lava is runny.", "Bread."]  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForSequenceClassification

    directory = tmp_path_factory.mktemp("cross-encoder")
    tokenizer = BertWordPieceTokenizer(lowercase=True)
    tokenizer.train_from_iterator([QUESTION, *PASSAGES] * 20, vocab_size=200, min_frequency=1)
    tokenizer.save(str(directory / "tokenizer.json"))  # with BERT's [CLS] a [SEP] b [SEP] pair template
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=128,
                        num_labels=1)  # fmt: skip
    BertForSequenceClassification(config).eval().save_pretrained(directory, safe_serialization=True)
    return directory


def test_scores_match_transformers_for_question_passage_pairs(model_dir: Path) -> None:
    from tokenizers import Tokenizer
    from transformers import BertForSequenceClassification

    ours = CrossEncoder.load(model_dir, device="cpu", dtype=torch.float32)  # fp32, to compare with fp32
    oracle = BertForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    expected = []
    for passage in PASSAGES:
        e = tokenizer.encode(QUESTION, passage)
        with torch.no_grad():
            logits = oracle(input_ids=torch.tensor([e.ids]), token_type_ids=torch.tensor([e.type_ids])).logits
        expected.append(float(logits[0, 0]))
    np.testing.assert_allclose(ours.scores(QUESTION, PASSAGES), expected, rtol=1e-4, atol=1e-5)


def test_batching_and_length_sorting_do_not_change_the_ranking(model_dir: Path) -> None:
    ours = CrossEncoder.load(model_dir, device="cpu", dtype=torch.float32)
    alone = [float(ours.scores(QUESTION, [p])[0]) for p in PASSAGES]
    for batch_size in (1, 2, 16):
        reranked = ours.rerank(QUESTION, PASSAGES, batch_size=batch_size)
        assert reranked.num_scored == len(PASSAGES)
        assert reranked.order == sorted(range(len(PASSAGES)), key=lambda i: -alone[i])


def test_a_spent_budget_keeps_the_fused_order_for_the_rest(model_dir: Path) -> None:
    ours = CrossEncoder.load(model_dir, device="cpu")
    skipped = ours.rerank(QUESTION, PASSAGES, budget_s=0.0)
    assert skipped.num_scored == 0 and skipped.order == list(range(len(PASSAGES)))


def test_the_retriever_reorders_its_candidates_by_the_cross_encoder(model_dir: Path, tmp_path: Path,
                                                                     corpus_dir: Path) -> None:  # fmt: skip
    from ragjet.embed.embedder import Embedder
    from ragjet.index import IndexParams
    from ragjet.ingest.chunker import Chunker
    from ragjet.rag.ingestion import ingest_paths
    from ragjet.retrieve import Retriever
    from ragjet.store import Collection

    embedder = Embedder.load("all-MiniLM-L6-v2", device="cpu")
    collection = Collection.create(tmp_path, "facts", embedder.model_id, embedder.dim, IndexParams(), device="cpu")
    ingest_paths(collection, [corpus_dir], embedder, Chunker(embedder.tokenizer, max_tokens=64, overlap_tokens=8))
    settings = RetrieveSettings(rerank="cross-encoder", cross_encoder_candidates=6)
    ours = CrossEncoder.load(model_dir, device="cpu")
    fused = Retriever(collection, embedder, settings).search_vector(QUESTION, embedder.embed([QUESTION])[0], 6)
    result = Retriever(collection, embedder, settings, ours).search_vector(QUESTION, embedder.embed([QUESTION])[0], 3)
    scores = dict(zip([h.chunk_id for h in fused.hits], ours.scores(QUESTION, [h.text for h in fused.hits]),
                      strict=True))  # fmt: skip
    assert [h.chunk_id for h in result.hits] == sorted(scores, key=lambda c: -scores[c])[:3]
    assert [h.rank for h in result.hits] == [1, 2, 3] and result.rerank_note.startswith("cross-encoder scored 6 of 6")


def test_a_directory_that_is_not_a_cross_encoder_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing config.json, model.safetensors, tokenizer.json"):
        CrossEncoder.load(tmp_path)
    from ragjet.config import load_settings
    from ragjet.rag.pipeline import load_cross_encoder

    with pytest.raises(ValueError, match="needs retrieve.cross_encoder_model"):
        load_cross_encoder(load_settings(data_dir=tmp_path, retrieve={"rerank": "cross-encoder"}))
