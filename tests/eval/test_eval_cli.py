"""`ragjet eval` input errors: one line naming the thing at fault, exit code 2, before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragjet.cli import app


def invoke(*args: str):
    return CliRunner().invoke(app, ["eval", *args])


def test_missing_dataset(tmp_path: Path):
    result = invoke(str(tmp_path / "nowhere"))
    assert result.exit_code == 2 and "dataset not found" in result.output


def test_malformed_jsonl_names_the_line(tmp_path: Path):
    directory = tmp_path / "set"
    (directory / "qrels").mkdir(parents=True)
    (directory / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n{oops\n')
    result = invoke(str(directory))
    assert result.exit_code == 2 and "corpus.jsonl line 2: not valid JSON" in result.output.replace("\n", "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--compare", "index.kindd=flat,index.kind=ivf_pq"], "unknown setting 'index.kindd'"),
        (["--compare", "index.kind=flat"], "exactly two"),
        (["--set", "retrieve.bm25=false"], "retrieve has no field 'bm25'"),
        (["--compare", "index.kind=flat,index.kind=btree"], "index.kind"),
        (["--calibrate", "model.json"], "need a SQuAD set"),  # python-beir has no answers to calibrate on
        (["--gold-baseline"], "need a SQuAD set"),
    ],
)
def test_bad_settings_exit_2(args: list[str], message: str):
    result = invoke("python-beir", *args)
    assert result.exit_code == 2 and message in result.output.replace("\n", " ")


def test_calibration_fits_one_configuration(tmp_path: Path):
    compare = ["--compare", "index.kind=flat,index.kind=hnsw"]
    result = invoke("pydoc-squad", "--calibrate", str(tmp_path / "m.json"), *compare)
    assert result.exit_code == 2 and "leave out --compare" in result.output.replace("\n", " ")
    assert not (tmp_path / "m.json").exists()
