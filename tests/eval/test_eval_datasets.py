"""BEIR and SQuAD readers: the shipped sets load, and every malformed input is a DatasetError naming where."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragjet.eval.datasets import DatasetError, load_dataset, write_corpus_files


def write_beir(directory: Path, corpus: str, queries: str, qrels: str) -> Path:
    (directory / "qrels").mkdir(parents=True)
    (directory / "corpus.jsonl").write_text(corpus)
    (directory / "queries.jsonl").write_text(queries)
    (directory / "qrels" / "test.tsv").write_text(qrels)
    return directory


CORPUS = '{"_id": "d1", "title": "One", "text": "first"}\n\n{"_id": "d2", "text": "second"}\n'
QUERIES = '{"_id": "q1", "text": "which first?"}\n{"_id": "q2", "text": "unjudged"}\n'
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\n"


def test_beir_folder_loads_with_graded_qrels(tmp_path: Path):
    dataset = load_dataset(write_beir(tmp_path / "set", CORPUS, QUERIES, QRELS))
    assert dataset.kind == "beir" and dataset.name == "set"
    assert [(d.id, d.title, d.text) for d in dataset.corpus] == [("d1", "One", "first"), ("d2", "", "second")]
    assert [(q.id, q.text, q.qrels) for q in dataset.queries] == [("q1", "which first?", {"d1": 2, "d2": 0})]


def test_shipped_sets_are_consistent():
    beir = load_dataset("python-beir")
    assert len(beir.corpus) == 40 and len(beir.queries) >= 20
    assert all(max(q.qrels.values()) == 2 for q in beir.queries)
    squad = load_dataset("python-squad")
    assert squad.kind == "squad" and len(squad.queries) == 15
    contexts = {d.id: d.text for d in squad.corpus}
    for query in squad.queries:  # every gold answer is a span of the context the question is about
        (doc_id,) = query.qrels
        assert query.answers and all(a in contexts[doc_id] for a in query.answers)


def test_limit_keeps_the_corpus():
    dataset = load_dataset("python-beir").limited(3)
    assert len(dataset.queries) == 3 and len(dataset.corpus) == 40


@pytest.mark.parametrize(
    ("corpus", "queries", "qrels", "message"),
    [
        ('{"_id": "d1", "text": "x"}\n{"_id": 2, \n', QUERIES, QRELS, r"corpus.jsonl line 2: not valid JSON"),
        ('{"_id": "d1"}\n', QUERIES, QRELS, r"corpus.jsonl line 1: missing 'text'"),
        ("[1, 2]\n", QUERIES, QRELS, r"corpus.jsonl line 1: expected a JSON object"),
        (CORPUS, '{"text": "no id"}\n', QRELS, r"queries.jsonl line 1: missing '_id'"),
        (CORPUS, QUERIES, "h\nq9\td1\t1\n", r"test.tsv line 2: query 'q9' is not in queries.jsonl"),
        (CORPUS, QUERIES, "h\nq1\td1\t1\nq1\td9\t1\n", r"test.tsv line 3: document 'd9' is not in corpus.jsonl"),
        (CORPUS, QUERIES, "h\nq1\td1\thigh\n", r"test.tsv line 2: score 'high' is not an integer"),
        (CORPUS, QUERIES, "h\nq1 d1\n", r"test.tsv line 2: expected"),
        (CORPUS, QUERIES, "query-id\tcorpus-id\tscore\n", r"no relevance judgements"),
    ],
)
def test_malformed_beir_files_name_file_and_line(tmp_path: Path, corpus: str, queries: str, qrels: str, message: str):
    with pytest.raises(DatasetError, match=message):
        load_dataset(write_beir(tmp_path / "set", corpus, queries, qrels))


def test_missing_beir_file_is_named(tmp_path: Path):
    directory = write_beir(tmp_path / "set", CORPUS, QUERIES, QRELS)
    (directory / "qrels" / "test.tsv").unlink()
    with pytest.raises(DatasetError, match=r"missing dataset file: .*qrels/test.tsv"):
        load_dataset(directory)
    with pytest.raises(DatasetError, match=r"qrels/dev.tsv"):
        load_dataset(directory, split="dev")


def test_missing_path_lists_the_builtin_sets(tmp_path: Path):
    with pytest.raises(DatasetError, match="dataset not found: .*python-beir"):
        load_dataset(tmp_path / "nowhere")


def squad_json(qas: list[dict]) -> dict:
    return {"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "Ada wrote notes.", "qas": qas}]}]}


def test_squad_file_loads_with_contexts_as_corpus(tmp_path: Path):
    path = tmp_path / "mini.json"
    qa = {"id": "x1", "question": "Who wrote notes?", "answers": [{"text": "Ada"}, {"text": "Ada"}]}
    path.write_text(json.dumps(squad_json([qa])))
    dataset = load_dataset(path)
    assert dataset.kind == "squad" and [(d.title, d.text) for d in dataset.corpus] == [("T", "Ada wrote notes.")]
    (query,) = dataset.queries
    assert query.answers == ("Ada",) and query.qrels == {dataset.corpus[0].id: 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"data": [\n  {"title": }', r"line 2: not valid JSON"),
        ('{"version": "1.1"}', r"not SQuAD v1.1 JSON .*'data'"),
        (json.dumps(squad_json([{"id": "x", "answers": []}])), r"not SQuAD v1.1 JSON .*'question'"),
        (json.dumps(squad_json([])), r"no questions"),
    ],
)
def test_malformed_squad_is_a_dataset_error(tmp_path: Path, text: str, message: str):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DatasetError, match=message):
        load_dataset(path)


def test_corpus_files_map_back_to_corpus_ids(tmp_path: Path):
    dataset = load_dataset(write_beir(tmp_path / "set", CORPUS, QUERIES, QRELS))
    stems = write_corpus_files(dataset, tmp_path / "files")
    assert stems == {"doc-00000": "d1", "doc-00001": "d2"}
    assert (tmp_path / "files" / "doc-00000.txt").read_text() == "One\n\nfirst\n"
    assert (tmp_path / "files" / "doc-00001.txt").read_text() == "second\n"
