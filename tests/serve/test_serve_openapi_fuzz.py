"""Schemathesis against the live server's own OpenAPI spec: every operation, schema-conforming and
schema-violating requests, and not one 5xx. The server is a private one (its own data folder), since the
fuzzer creates and deletes collections at random.

RAGJET_FUZZ_EXAMPLES sets the examples per operation and mode (default 8: about 15 s here); the counts
are printed (pytest -s) for docs/reliability.md.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from support.stack import require_layers

require_layers()

from support.live_server import LiveServer, run_live_server  # noqa: E402

EXAMPLES = int(os.environ.get("RAGJET_FUZZ_EXAMPLES", "8"))


@pytest.fixture(scope="module")
def fuzzed_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path, corpus_dir: Path
) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("fuzz-data")
    llm = {"max_model_len": 256}  # bounds each generated answer, so thousands of tokens are never asked for
    limits = {"rate_limit_per_s": 1000.0, "rate_limit_burst": 1000}  # the fuzzer, not the rate limiter, is tested
    with run_live_server(data_dir, tiny_llama_dir, corpus_dir, llm=llm, ingest_roots=[data_dir], **limits) as server:
        server.upload(corpus_dir)
        yield server


def test_no_request_the_spec_allows_or_forbids_gets_a_5xx(fuzzed_server: LiveServer) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def send(case: schemathesis.Case) -> None:
                response = case.call(base_url=fuzzed_server.url, timeout=60)
                statuses[response.status_code] += 1
                if response.status_code >= 500 and not _own_deadline_expired(case, response.status_code):
                    failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {case.body!r}")

            try:
                send()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to violate: the operation takes no input
    num_requests = sum(statuses.values())
    print(f"\nschemathesis: {len(operations)} operations, {num_requests} requests, statuses {sorted(statuses.items())}")
    assert len(operations) >= 15 and num_requests >= len(operations) * 2
    assert not failures, "\n".join(failures[:20])


def _own_deadline_expired(case: schemathesis.Case, status: int) -> bool:
    """A 504 for a request that set its own deadline (`ragjet.deadline_s`, any positive float: the fuzzer sent
    2e-78 s) is the documented answer to a deadline that expired, not a server fault."""
    options = case.body.get("ragjet") if isinstance(case.body, dict) else None
    return status == 504 and isinstance(options, dict) and options.get("deadline_s") is not None
