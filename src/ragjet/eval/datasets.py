"""Readers for evaluation sets: BEIR folders and SQuAD v1.1 files, both into one `EvalDataset`.

BEIR: ``corpus.jsonl`` (``{"_id", "title", "text"}`` per line), ``queries.jsonl`` (``{"_id", "text"}``)
and ``qrels/<split>.tsv`` (a header, then ``query-id  corpus-id  score``). Only queries with qrels are
evaluated. SQuAD v1.1: ``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
"answers": [{"text"}]}]}]}]}``; every distinct context becomes a corpus document (relevant to the
questions asked about it), so SQuAD sets get retrieval figures as well as answer figures.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

DatasetKind = Literal["beir", "squad"]
DATA_DIR = Path(__file__).parent / "data"
BUILTIN_DATASETS = {  # sets written for ragjet: Python language questions
    "python-beir": DATA_DIR / "python-beir",
    "python-squad": DATA_DIR / "python-squad.json",  # 15 questions on a few hand-written paragraphs: a quick check
    # 269 questions on 160 paragraphs of 54 demo-corpus topics (pydoc_data.topics), copied verbatim: the set that
    # answer quality and confidence calibration are measured on; its "pydoc_python" names the Python it was copied from
    "pydoc-squad": DATA_DIR / "pydoc-squad.json",
}


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file (and line) at fault."""


@dataclass(frozen=True, slots=True)
class CorpusDoc:
    id: str
    title: str
    text: str


@dataclass(frozen=True, slots=True)
class EvalQuery:
    id: str
    text: str
    qrels: dict[str, int]  # corpus id → relevance grade (> 0 is relevant)
    answers: tuple[str, ...] = ()  # gold answers (SQuAD only)


@dataclass(frozen=True, slots=True)
class EvalDataset:
    name: str
    kind: DatasetKind
    corpus: tuple[CorpusDoc, ...]
    queries: tuple[EvalQuery, ...]

    def limited(self, limit: int | None) -> EvalDataset:
        """The first `limit` queries (the whole corpus stays, so retrieval is not made easier)."""
        if limit is None:
            return self
        return EvalDataset(self.name, self.kind, self.corpus, self.queries[:limit])


def load_dataset(name_or_path: str | Path, split: str = "test") -> EvalDataset:
    """A built-in set by name, a BEIR folder (holding corpus.jsonl) or a SQuAD ``.json`` file.

    Raises DatasetError for a missing path or a malformed file.
    """
    path = BUILTIN_DATASETS.get(str(name_or_path), Path(name_or_path))
    if path.is_dir():
        return load_beir(path, split)
    if path.is_file():
        return load_squad(path)
    builtin = ", ".join(BUILTIN_DATASETS)
    raise DatasetError(f"dataset not found: {path} (not a folder, a file, or a built-in set: {builtin})")


def load_beir(directory: Path, split: str = "test") -> EvalDataset:
    corpus = tuple(
        CorpusDoc(_field(r, "_id", where), str(r.get("title") or ""), _field(r, "text", where))
        for r, where in _jsonl(directory / "corpus.jsonl")
    )
    texts = {_field(r, "_id", where): _field(r, "text", where) for r, where in _jsonl(directory / "queries.jsonl")}
    qrels = _read_qrels(directory / "qrels" / f"{split}.tsv", set(texts), {d.id for d in corpus})
    queries = tuple(EvalQuery(qid, texts[qid], grades) for qid, grades in qrels.items())
    if not queries:
        raise DatasetError(f"{directory / 'qrels' / f'{split}.tsv'}: no relevance judgements")
    return EvalDataset(directory.name, "beir", corpus, queries)


def _jsonl(path: Path) -> Iterator[tuple[dict, str]]:
    """(record, "file line N") for each non-blank line of a JSON-lines file."""
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise DatasetError(f"{where}: expected a JSON object")
        yield record, where


def _field(record: dict, key: str, where: str) -> str:
    value = record.get(key)
    if value is None or isinstance(value, dict | list):
        raise DatasetError(f"{where}: missing {key!r}")
    return str(value)


def _read_qrels(path: Path, query_ids: set[str], corpus_ids: set[str]) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    lines = _read_text(path).splitlines()
    for number, line in enumerate(lines[1:], start=2):  # line 1 is the header
        if not line.strip():
            continue
        where = f"{path} line {number}"
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) != 3:
            raise DatasetError(f"{where}: expected 'query-id<TAB>corpus-id<TAB>score'")
        query_id, doc_id, score = (p.strip() for p in parts)
        if query_id not in query_ids:
            raise DatasetError(f"{where}: query {query_id!r} is not in queries.jsonl")
        if doc_id not in corpus_ids:
            raise DatasetError(f"{where}: document {doc_id!r} is not in corpus.jsonl")
        try:
            qrels.setdefault(query_id, {})[doc_id] = int(score)
        except ValueError:
            raise DatasetError(f"{where}: score {score!r} is not an integer") from None
    return qrels


def load_squad(path: Path) -> EvalDataset:
    try:
        data = json.loads(_read_text(path))["data"]
        corpus, queries = _squad_records(data)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    except (KeyError, TypeError, IndexError) as exc:
        raise DatasetError(f"{path}: not SQuAD v1.1 JSON (missing or malformed {exc})") from None
    if not queries:
        raise DatasetError(f"{path}: no questions")
    return EvalDataset(path.stem, "squad", tuple(corpus), tuple(queries))


def _squad_records(data: list[dict]) -> tuple[list[CorpusDoc], list[EvalQuery]]:
    corpus: list[CorpusDoc] = []
    queries: list[EvalQuery] = []
    for article_index, article in enumerate(data):
        title = str(article.get("title", ""))
        for paragraph_index, paragraph in enumerate(article["paragraphs"]):
            doc_id = f"{article_index}-{paragraph_index}"
            corpus.append(CorpusDoc(doc_id, title, str(paragraph["context"])))
            for qa in paragraph["qas"]:
                answers = tuple(dict.fromkeys(str(a["text"]) for a in qa["answers"]))
                queries.append(EvalQuery(str(qa["id"]), str(qa["question"]), {doc_id: 1}, answers))
    return corpus, queries


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"missing dataset file: {path}") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason})") from None


def write_corpus_files(dataset: EvalDataset, directory: Path) -> dict[str, str]:
    """Write each corpus document to ``<directory>/doc-NNNNN.txt`` (title line, blank line, text).

    Returns file stem → corpus id: a hit's source is the ingested path, and its stem maps it back to
    the qrels. Numbered names keep arbitrary ids (slashes, spaces) out of file names.
    """
    directory.mkdir(parents=True, exist_ok=True)
    stems: dict[str, str] = {}
    for index, doc in enumerate(dataset.corpus):
        stem = f"doc-{index:05d}"
        body = f"{doc.title}\n\n{doc.text}\n" if doc.title else f"{doc.text}\n"
        (directory / f"{stem}.txt").write_text(body, encoding="utf-8")
        stems[stem] = doc.id
    return stems
