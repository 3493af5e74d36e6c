"""python -m gpalloc sensitivity (data/results/fedora-bpf-sensitivity.csv): the committed table
is what the model computes for its default rows, and names every input with its source."""

import pytest

from gpalloc import sensitivity
from gpalloc.experiments import read_ram_sweep


@pytest.fixture(scope="module")
def committed():
    return sensitivity.read_csv()


def test_the_table_has_every_task_in_order(committed):
    assert [(r["input"], r["seed"]) for r in committed] == \
        [(name, seed) for name, _, seed in sensitivity.tasks()]


def test_default_rows_are_the_committed_fedora_bpf_run(committed):
    sweep_8g = next(r for r in read_ram_sweep() if r["node_mem"] == "8G")
    default0 = committed[0]
    assert default0["input"] == sensitivity.DEFAULT and default0["seed"] == 0
    assert default0["baseline_4k_kb"] == sweep_8g["baseline_4k_kb"]
    assert default0["grouped_4k_kb"] == sweep_8g["grouped_4k_kb"]


def test_one_row_is_what_the_model_computes(committed):
    row = next(r for r in committed if r["input"] == "thp")
    assert sensitivity._run(("thp", False, row["seed"])) == row


def test_summary_names_each_input_and_its_source(committed):
    text = sensitivity.summary(committed)
    for inp in sensitivity.INPUTS:
        assert f"  {inp.field}: {inp.source}" in text


def test_a_bad_file_names_its_line(tmp_path):
    bad = tmp_path / "s.csv"
    bad.write_text(",".join(sensitivity.FIELDS) + "\ndefault,,x,1,2,3.0,4.0,5,6\n")
    with pytest.raises(ValueError, match=r"s\.csv:2: "):
        sensitivity.read_csv(bad)
