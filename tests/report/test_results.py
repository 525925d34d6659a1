"""results.json as a typed record: what the report stage writes reads back; damaged or foreign
files give one line naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftrisk.errors import InputError
from ftrisk.records import RESULTS_SCHEMA_VERSION, AuditResults
from ftrisk.report.results import read_results
from tests.report.test_table_markdown import old_condition, run_conditions, summary


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    return path


def test_a_current_record_reads_back_field_for_field(tmp_path):
    data = summary(run_conditions(), seeds=[0, 1], threads=2)
    record = read_results(_write(tmp_path, data))
    assert record.schema_version == RESULTS_SCHEMA_VERSION
    assert [c.name for c in record.conditions] == [c["name"] for c in data["conditions"]]
    assert record.conditions[2].refusal_rate == data["conditions"][2]["refusal_rate"]
    assert record.seeds == [0, 1] and record.threads == 2
    assert record.summary() == json.loads(json.dumps(data))


def test_an_old_record_reads_as_version_1_and_renders_as_before(tmp_path):
    data = summary([old_condition("baseline", 0.9), old_condition("attack", 0.3)])
    del data["schema_version"]
    record = read_results(_write(tmp_path, data))
    assert record.schema_version == 1 and record.conditions[1].partial_rate is None
    # Keys the file lacked stay absent, so renderers see the file as it was.
    assert "schema_version" not in record.summary()
    assert "partial_rate" not in record.summary()["conditions"][1]


@pytest.mark.parametrize(("content", "expected"), [
    ("{\"conditions\": [", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ("{\"name\": \"x\"}", "field 'conditions': Field required"),
    ("{\"conditions\": [{\"name\": \"b\", \"refusal_rate\": \"high\"}]}",
     "field 'conditions.0.n_harmful': Field required"),
])
def test_a_damaged_or_foreign_file_is_one_line_naming_what_is_wrong(tmp_path, content,
                                                                     expected):
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(InputError) as caught:
        read_results(path)
    assert str(caught.value).startswith(str(path)) and expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_file_says_to_finish_the_audit(tmp_path):
    with pytest.raises(InputError, match="no results here: run the audit to the end first"):
        read_results(tmp_path / "results.json")


def test_unknown_top_level_keys_of_a_newer_ftrisk_are_kept():
    record = AuditResults.model_validate({"conditions": [], "future_key": {"a": 1}})
    assert record.summary()["future_key"] == {"a": 1}
