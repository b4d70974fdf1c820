"""Evaluation: BEIR/SQuAD readers, retrieval and answer metrics, the `ragjet eval` runner."""
