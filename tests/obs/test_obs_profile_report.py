"""Profile outputs and the workload driver: PNG and JSON well-formed, concurrency bounded, failures counted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from ragjet.cli import app
from ragjet.obs.profile import STAGES, analyze
from ragjet.obs.report import write_chart, write_json
from ragjet.obs.workload import read_questions, run_workload

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode_heavy(i: int) -> dict[str, float]:
    t = {f"{s}_ms": 2.0 + i % 3 for s in STAGES}
    t["decode_ms"] = 80.0 + i
    t["total_ms"] = sum(t.values()) + 0.5
    return t


def test_chart_and_json_are_well_formed(tmp_path: Path):
    report = analyze([decode_heavy(i) for i in range(12)], wall_s=3.0, concurrency=2)
    write_chart(report, tmp_path / "out" / "profile.png")
    write_json(report, tmp_path / "out" / "profile.json", {"target": "test"})
    png = tmp_path / "out" / "profile.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    assert imread(png).shape[:2] == (450, 1100)  # figsize 11 × 4.5 in at 100 dpi
    body = json.loads((tmp_path / "out" / "profile.json").read_text())
    assert body["target"] == "test" and body["report"]["bottleneck"] == "decode"
    assert [s["stage"] for s in body["report"]["stages"]] == [*STAGES, "other"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["profile.json", "profile.png"]  # no temp files


async def test_workload_never_exceeds_its_concurrency_and_cycles_questions():
    in_flight, peak, asked = 0, 0, []

    async def request(question: str) -> dict[str, float]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        asked.append(question)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return {"embed_ms": 1.0, "total_ms": 10.0}

    run = await run_workload(request, ["a", "b", "c"], num_requests=10, concurrency=3)
    assert peak == 3 and len(run.timings) == 10 and not run.errors
    assert sorted(asked) == sorted(["a", "b", "c"] * 3 + ["a"])
    assert run.wall_s >= 0.04  # 10 requests of 10 ms, 3 at a time: at least 4 rounds


async def test_failed_requests_are_counted_not_fatal():
    async def request(question: str) -> dict[str, float]:
        if question == "bad":
            raise RuntimeError("HTTP 429: overloaded")
        return {"total_ms": 1.0}

    run = await run_workload(request, ["good", "bad"], num_requests=4, concurrency=2)
    assert len(run.timings) == 2 and run.errors == ["RuntimeError: HTTP 429: overloaded"] * 2


async def test_workload_rejects_empty_settings():
    with pytest.raises(ValueError, match="at least one"):
        await run_workload(lambda q: asyncio.sleep(0, {}), [], num_requests=1, concurrency=1)


def test_questions_file_is_one_question_per_line(tmp_path: Path):
    path = tmp_path / "q.txt"
    path.write_text("What is a list?\n\n  How do generators work?  \n")
    assert read_questions(path) == ["What is a list?", "How do generators work?"]
    path.write_text("\n \n")
    with pytest.raises(ValueError, match="no questions"):
        read_questions(path)
    with pytest.raises(ValueError, match="cannot read questions from .*missing.txt"):
        read_questions(tmp_path / "missing.txt")


def test_cli_profile_of_an_unreachable_server_fails_in_one_line(tmp_path: Path):
    result = CliRunner().invoke(
        app, ["profile", "--url", "http://127.0.0.1:9", "-n", "2", "-c", "1", "--out", str(tmp_path / "p")]
    )
    assert result.exit_code == 2, result.output
    assert "all 2 requests failed; first error: ConnectError" in result.output
    assert not (tmp_path / "p").exists()


def test_cli_profile_with_a_missing_questions_file_exits_2(tmp_path: Path):
    result = CliRunner().invoke(app, ["profile", "--questions", str(tmp_path / "nope.txt")])
    assert result.exit_code == 2 and "cannot read questions" in result.output
