"""Semantic reranking with a cross-encoder: a BERT sequence classifier reads the question and each candidate chunk
together and scores how well the chunk answers it (retrieve.rerank = "cross-encoder").

Any local Hugging Face directory of a BERT-style `BertForSequenceClassification` works (config.json,
model.safetensors, tokenizer.json), e.g. an ms-marco MiniLM cross-encoder downloaded once. Candidates are
scored in batches sorted by length (little padding), in fp16 on CUDA and the policy's dtype on the CPU. Scoring
is time-budgeted: when the budget (or the request's deadline) runs out, the candidates not yet scored keep their
fused order after the scored ones, and the result says how many were scored.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer
from torch import nn

from ragjet.device import pick_device
from ragjet.embed.bert import BertConfig, BertEncoder, load_bert_state
from ragjet.hardware import cpu_policy

REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


class CrossEncoderModel(nn.Module):
    """BERT, the pooler (first token, dense, tanh) and the classifier: (B, N) pairs -> (B, num_labels) logits."""

    def __init__(self, config: BertConfig, num_labels: int):
        super().__init__()
        self.encoder = BertEncoder(config)
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)
        self.classifier = nn.Linear(config.hidden_size, num_labels)

    def forward(self, input_ids: torch.Tensor, token_types: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        states = self.encoder(input_ids, mask, token_types)  # (B, N, d)
        return self.classifier(torch.tanh(self.pooler(states[:, 0])))


@dataclass(frozen=True, slots=True)
class Reranked:
    order: list[int]  # indices into the candidates, best first
    num_scored: int  # candidates the cross-encoder scored before its budget ran out
    ms: float


class CrossEncoder:
    def __init__(self, model: CrossEncoderModel, tokenizer: Tokenizer, device: torch.device, max_len: int):
        self.model, self.tokenizer, self.device, self.max_len = model, tokenizer, device, max_len
        tokenizer.enable_truncation(max_len, strategy="only_second")

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", dtype: torch.dtype | None = None) -> CrossEncoder:
        """`dtype` None: fp16 on CUDA, the CPU policy's embedder dtype on the CPU. ValueError naming what is
        missing for a directory that is not a BERT sequence classifier."""
        folder = Path(path).expanduser()
        missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
        if missing:
            raise ValueError(f"{folder}: not a cross-encoder directory (missing {', '.join(missing)})")
        raw = json.loads((folder / "config.json").read_text())
        config = BertConfig.from_dict(raw)
        torch_device = pick_device(device)
        model = CrossEncoderModel(config, len(raw.get("id2label", {0: "score"})))
        _load_weights(model, load_file(str(folder / "model.safetensors")))
        dtype = dtype or (torch.float16 if torch_device.type == "cuda" else cpu_policy().embed_dtype)
        model = model.to(torch_device, dtype).eval().requires_grad_(False)
        return cls(model, Tokenizer.from_file(str(folder / "tokenizer.json")), torch_device,
                   min(512, config.max_position_embeddings))  # fmt: skip

    @torch.inference_mode()
    def scores(self, query: str, passages: list[str]) -> np.ndarray:
        """Relevance of each passage to `query` (higher is better), in the order given."""
        return self._score(query, passages, range(len(passages)), batch_size=len(passages) or 1, budget_s=None)[0]

    @torch.inference_mode()
    def rerank(self, query: str, passages: list[str], batch_size: int = 16, budget_s: float | None = None) -> Reranked:
        """Candidates reordered by score; those the budget left unscored follow in their given order."""
        started = time.perf_counter()
        by_length = sorted(range(len(passages)), key=lambda i: len(passages[i]))
        scores, scored = self._score(query, passages, by_length, batch_size, budget_s)
        ranked = sorted((i for i in range(len(passages)) if i in scored), key=lambda i: -scores[i])
        rest = [i for i in range(len(passages)) if i not in scored]
        return Reranked(ranked + rest, len(scored), (time.perf_counter() - started) * 1e3)

    def _score(
        self, query: str, passages: list[str], order: range | list[int], batch_size: int, budget_s: float | None
    ) -> tuple[np.ndarray, set[int]]:
        deadline = None if budget_s is None else time.perf_counter() + budget_s
        scores, scored = np.full(len(passages), -np.inf, dtype=np.float32), set()
        order = list(order)
        for start in range(0, len(order), batch_size):
            if deadline is not None and time.perf_counter() >= deadline:
                break
            batch = order[start : start + batch_size]
            scores[batch] = self._forward(query, [passages[i] for i in batch])
            scored.update(batch)
        return scores, scored

    def _forward(self, query: str, passages: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch([(query, p) for p in passages])
        width = max(len(e.ids) for e in encodings)
        ids, types, mask = (torch.zeros(len(encodings), width, dtype=torch.long) for _ in range(3))
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)], types[row, : len(e.ids)] = torch.tensor(e.ids), torch.tensor(e.type_ids)
            mask[row, : len(e.ids)] = 1
        logits = self.model(ids.to(self.device), types.to(self.device), mask.to(self.device)).float()
        # One label: the logit is the score; two (irrelevant, relevant): the relevant class's log-odds.
        return (logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]).cpu().numpy()


def _load_weights(model: CrossEncoderModel, weights: dict[str, torch.Tensor]) -> None:
    load_bert_state(model.encoder, weights)
    w = {k.removeprefix("bert."): v for k, v in weights.items()}
    model.pooler.load_state_dict({"weight": w["pooler.dense.weight"], "bias": w["pooler.dense.bias"]})
    model.classifier.load_state_dict({"weight": w["classifier.weight"], "bias": w["classifier.bias"]})
