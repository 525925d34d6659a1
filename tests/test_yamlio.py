"""Tests for strict YAML loading and validation errors that name file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from ftrisk.errors import FtriskError, InputError
from ftrisk.yamlio import load_model_file, load_yaml, validate


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    learning_rate: float = 0.1
    epochs: int = Field(default=1, ge=1)


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    inner: Inner = Inner()
    optional_inner: Inner | None = None


class Top(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = "untitled"
    items: tuple[Item, ...] = ()


def _write(tmp_path: Path, text: str, name: str = "conf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def _line(path: Path, needle: str) -> int:
    """1-based number of the one line of ``path`` that contains ``needle``."""
    hits = [i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"{needle!r} found on lines {hits}"
    return hits[0]


# --- InputError -----------------------------------------------------------------------------


def test_input_error_names_path_line_and_field() -> None:
    err = InputError("unknown key", path="a/b.yaml", line=7, field="x.y")
    assert str(err) == "a/b.yaml:7 field 'x.y': unknown key"
    assert (err.path, err.line, err.field) == ("a/b.yaml", 7, "x.y")
    assert isinstance(err, FtriskError)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"path": "c.yaml"}, "c.yaml: bad"),
        ({"path": "c.yaml", "line": 3}, "c.yaml:3: bad"),
        ({"field": "a.b"}, "field 'a.b': bad"),
        ({"line": 3}, "bad"),  # a line without a file means nothing
        ({}, "bad"),
    ],
)
def test_input_error_omits_what_it_does_not_know(kwargs: dict, expected: str) -> None:
    assert str(InputError("bad", **kwargs)) == expected


# --- load_yaml ------------------------------------------------------------------------------


def test_load_yaml_types_scalars_like_pyyaml(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        an_int: 3
        a_float: 2.5e-5
        a_bool: true
        a_null: null
        a_str: hello
        quoted_int: "3"
        bare_exponent: 1e-3
    """,
    )
    data, _ = load_yaml(path)
    assert data == {
        "an_int": 3,
        "a_float": 2.5e-5,
        "a_bool": True,
        "a_null": None,
        "a_str": "hello",
        "quoted_int": "3",
        # YAML 1.1 needs a dot in a float, so PyYAML reads this as a string;
        # pydantic coerces it (see test_config).
        "bare_exponent": "1e-3",
    }
    assert isinstance(data["an_int"], int) and isinstance(data["a_float"], float)


def test_key_without_value_loads_as_null(tmp_path: Path) -> None:
    # `system_prompt:` with nothing after it is ordinary YAML for "no value".
    path = _write(
        tmp_path,
        """
        title:
        items: []
    """,
    )
    data, lines = load_yaml(path)
    assert data == {"title": None, "items": []}
    assert lines[("items",)] == 2


def test_load_yaml_records_the_line_of_every_value(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        title: x
        items:
          - name: first
          - name: second
            inner:
              epochs: 4
    """,
    )
    data, lines = load_yaml(path)
    assert data["items"][1]["inner"] == {"epochs": 4}
    assert lines[("title",)] == 1
    assert lines[("items", 0, "name")] == 3
    assert lines[("items", 1, "name")] == 4
    assert lines[("items", 1, "inner", "epochs")] == 6


def test_duplicate_top_level_key_names_the_second_occurrence(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        title: a
        items: []
        title: b
    """,
    )
    with pytest.raises(InputError, match="duplicate key 'title'") as info:
        load_yaml(path)
    assert info.value.line == 3
    assert f"{path}:3" in str(info.value)


def test_duplicate_nested_key_names_the_second_occurrence(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        items:
          - name: a
            inner:
              epochs: 2
              learning_rate: 0.1
              epochs: 3
    """,
    )
    with pytest.raises(InputError, match="duplicate key 'epochs'") as info:
        load_yaml(path)
    assert info.value.line == 6


def test_duplicate_key_in_flow_mapping_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "title: x\ninner: {epochs: 1, epochs: 2}\n")
    with pytest.raises(InputError, match="duplicate key 'epochs'") as info:
        load_yaml(path)
    assert info.value.line == 2


def test_same_key_in_sibling_mappings_is_not_a_duplicate(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        items:
          - name: a
          - name: b
    """,
    )
    data, _ = load_yaml(path)
    assert [item["name"] for item in data["items"]] == ["a", "b"]


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(InputError, match="does not exist") as info:
        load_yaml(path)
    assert str(path) in str(info.value)


def test_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_yaml(tmp_path)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file_is_an_input_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match="empty") as info:
        load_yaml(path)
    assert str(path) in str(info.value)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        title: ok
        items:
          - name: a: b
    """,
    )
    with pytest.raises(InputError, match="invalid YAML") as info:
        load_yaml(path)
    assert info.value.line == 3
    assert f"{path}:3" in str(info.value)


def test_unclosed_quote_is_an_input_error(tmp_path: Path) -> None:
    path = _write(tmp_path, 'title: "unclosed\nitems: []\n')
    with pytest.raises(InputError, match="invalid YAML"):
        load_yaml(path)


def test_two_documents_are_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "title: a\n---\ntitle: b\n")
    with pytest.raises(InputError, match="invalid YAML") as info:
        load_yaml(path)
    assert info.value.line == 2


def test_unknown_tag_is_an_input_error_not_a_traceback(tmp_path: Path) -> None:
    # Configs copied from other tools carry tags such as !include; say where, don't crash.
    path = _write(
        tmp_path,
        """
        title: ok
        items: !include items.yaml
    """,
    )
    with pytest.raises(InputError) as info:
        load_yaml(path)
    assert info.value.line == 2


def test_file_that_is_not_utf8_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("title: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(InputError) as info:
        load_yaml(path)
    assert str(path) in str(info.value)


def test_anchor_and_alias_share_a_value(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        items:
          - name: a
            inner: &shared
              epochs: 3
              learning_rate: 0.5
          - name: b
            inner: *shared
    """,
    )
    model = load_model_file(Top, path)
    assert model.items[1].inner == Inner(epochs=3, learning_rate=0.5)
    assert model.items[0].inner == model.items[1].inner


def test_merge_key_overrides_anchored_values(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        items:
          - name: a
            inner: &shared
              epochs: 3
              learning_rate: 0.5
          - name: b
            inner:
              <<: *shared
              epochs: 5
    """,
    )
    model = load_model_file(Top, path)
    assert model.items[1].inner == Inner(epochs=5, learning_rate=0.5)


def test_merge_key_from_several_anchors_and_before_own_keys(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        defaults:
          - &slow {epochs: 3, learning_rate: 0.5}
          - &fast {epochs: 9}
        merged:
          learning_rate: 0.1
          <<: [*fast, *slow]
    """,
    )
    data, _ = load_yaml(path)
    # Own keys win wherever they stand; among sources the first listed wins.
    assert data["merged"] == {"learning_rate": 0.1, "epochs": 9}


def test_duplicate_own_key_next_to_a_merge_is_still_an_error(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        base: &base {epochs: 3}
        merged:
          <<: *base
          epochs: 4
          epochs: 5
    """,
    )
    with pytest.raises(InputError, match="duplicate key 'epochs'") as info:
        load_yaml(path)
    assert info.value.line == 5


def test_merge_of_a_scalar_is_an_input_error(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        base: &base 3
        merged:
          <<: *base
    """,
    )
    with pytest.raises(InputError, match="'<<'") as info:
        load_yaml(path)
    assert info.value.line == 3


def test_misspelt_key_arriving_through_a_merge_is_still_caught(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        items:
          - name: a
            inner: &shared {epochs: 3, learnin_rate: 0.5}
          - name: b
            inner:
              <<: *shared
    """,
    )
    with pytest.raises(InputError, match="did you mean 'learning_rate'"):
        load_model_file(Top, path)


# --- validate -------------------------------------------------------------------------------


def test_misspelt_nested_key_suggests_the_close_spelling(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        items:
          - name: a
          - name: b
            inner:
              leraning_rate: 0.1
    """,
    )
    with pytest.raises(InputError) as info:
        load_model_file(Top, path)
    err = info.value
    assert err.field == "items.1.inner.leraning_rate"
    assert err.line == 5
    assert "did you mean 'learning_rate'" in str(err)
    assert str(err).startswith(f"{path}:5 field 'items.1.inner.leraning_rate': unknown key")


def test_misspelt_key_under_optional_model_suggests_the_close_spelling(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        items:
          - name: a
            optional_inner: {epoch: 2}
    """,
    )
    with pytest.raises(InputError, match="did you mean 'epochs'") as info:
        load_model_file(Top, path)
    assert info.value.field == "items.0.optional_inner.epoch"
    assert info.value.line == 3


def test_misspelt_top_level_key_suggests_the_close_spelling(tmp_path: Path) -> None:
    path = _write(tmp_path, "title: x\nitem: []\n")
    with pytest.raises(InputError, match="did you mean 'items'") as info:
        load_model_file(Top, path)
    assert (info.value.field, info.value.line) == ("item", 2)


def test_unknown_key_without_close_match_lists_the_known_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, "title: x\nzzzzzz: 1\n")
    with pytest.raises(InputError, match="expected one of: title, items") as info:
        load_model_file(Top, path)
    assert "did you mean" not in str(info.value)


def test_misspelt_key_with_block_value_points_at_the_key(tmp_path: Path) -> None:
    # The field named is the key, so the line must be the key's, not its first child's.
    path = _write(
        tmp_path,
        """
        items:
          - name: a
            innr:
              epochs: 2
    """,
    )
    with pytest.raises(InputError, match="did you mean 'inner'") as info:
        load_model_file(Top, path)
    assert info.value.field == "items.0.innr"
    assert info.value.line == 3


def test_wrong_type_names_field_and_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        items:
          - name: a
            inner:
              learning_rate: 0.1
              epochs: many
    """,
    )
    with pytest.raises(InputError, match="valid integer") as info:
        load_model_file(Top, path)
    assert (info.value.field, info.value.line) == ("items.0.inner.epochs", 5)


def test_empty_value_names_its_own_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        items:
          - name: a
            inner:
              learning_rate:
              epochs: 2
    """,
    )
    with pytest.raises(InputError) as info:
        load_model_file(Top, path)
    assert (info.value.field, info.value.line) == ("items.0.inner.learning_rate", 4)


def test_missing_field_points_at_the_enclosing_item(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        title: t
        items:
          - name: a
          - inner: {epochs: 2}
    """,
    )
    with pytest.raises(InputError, match="required field is missing") as info:
        load_model_file(Top, path)
    assert (info.value.field, info.value.line) == ("items.1.name", 4)


def test_top_level_that_is_not_a_mapping_is_an_input_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "- just\n- a list\n")
    with pytest.raises(InputError, match=str(path.name)):
        load_model_file(Top, path)


def test_validate_without_lines_names_field_but_no_line() -> None:
    with pytest.raises(InputError) as info:
        validate(Top, {"items": [{"name": "a", "inner": {"epochs": 0}}]}, path="mem.yaml")
    err = info.value
    assert err.line is None
    assert str(err).startswith("mem.yaml field 'items.0.inner.epochs': ")
    assert "greater than or equal to 1" in str(err)


def test_validate_returns_the_model_when_valid() -> None:
    model = validate(Top, {"items": [{"name": "a"}]}, path="mem.yaml")
    assert model == Top(items=(Item(name="a"),))


# --- malformed input (issue 13) -------------------------------------------------------------


def test_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "title: a\nitems: []\ntitle: b\n")
    with pytest.raises(InputError) as info:
        load_yaml(path)
    assert str(info.value) == f"{path}:3: duplicate key 'title' (first on line 1, again on line 3)"


@pytest.mark.parametrize(("encoding", "named"), [
    ("utf-16", "UTF-16 (little-endian, with a byte-order mark)"),
    ("utf-16-be", "UTF-16 (big-endian, no byte-order mark)"),
    ("utf-32", "UTF-32 (little-endian, with a byte-order mark)"),
])
def test_utf16_and_utf32_config_files_name_the_encoding(tmp_path: Path, encoding: str,
                                                        named: str) -> None:
    path = tmp_path / "conf.yaml"
    path.write_text("title: caf\u00e9\n", encoding=encoding)
    with pytest.raises(InputError) as info:
        load_yaml(path)
    assert str(info.value) == f"{path}:1: the file is {named}, not UTF-8; re-save it as UTF-8"


def test_latin1_config_names_the_line_of_the_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("title: a\nitems: []\n# caf\u00e9\n".encode("latin-1"))
    with pytest.raises(InputError, match="not valid UTF-8") as info:
        load_yaml(path)
    assert info.value.line == 3 and "re-save the file as UTF-8" in str(info.value)


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbftitle: x\n")
    assert load_yaml(path)[0] == {"title": "x"}


class Numbers(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seeds: tuple[int, ...] = ()
    pair: tuple[str, float] = ("a", 0.0)
    metrics: dict[str, float] = {}
    maybe: int | None = None
    flag: bool = False
    anything: Any = None
    options: dict[str, Any] = {}
    inner: Inner | None = None


@pytest.mark.parametrize(("text", "field", "line"), [
    ("seeds: [1, true]\n", "seeds.1", 1),
    ("pair: [a, false]\n", "pair.1", 1),
    ("metrics:\n  a: 0.5\n  b: yes\n", "metrics.b", 3),
    ("maybe: true\n", "maybe", 1),
    ("inner:\n  learning_rate: true\n", "inner.learning_rate", 2),
])
def test_boolean_where_a_number_is_expected_is_an_error(tmp_path: Path, text: str, field: str,
                                                        line: int) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InputError, match="expected a number, got a boolean") as info:
        load_model_file(Numbers, path)
    assert (info.value.field, info.value.line) == (field, line)


def test_booleans_stay_valid_where_booleans_or_anything_are_expected(tmp_path: Path) -> None:
    path = _write(tmp_path, "flag: true\nanything: false\noptions: {x: true}\n"
                  "pair: [a, 1]\nseeds: [1, 2]\ninner: {epochs: 3, learning_rate: 1}\n")
    model = load_model_file(Numbers, path)
    assert (model.flag, model.anything, model.options) == (True, False, {"x": True})
    assert model.inner is not None and model.inner.learning_rate == 1.0


def test_boolean_for_number_finds_the_location() -> None:
    from ftrisk.yamlio import boolean_for_number

    assert boolean_for_number(int, True) == ()
    assert boolean_for_number(float | None, False) == ()
    assert boolean_for_number(bool | int, True) is None
    assert boolean_for_number(int, 1) is None
    assert boolean_for_number(tuple[int, ...], [1, 2, True]) == (2,)
    assert boolean_for_number(dict[str, dict[str, float]], {"a": {"b": True}}) == ("a", "b")
    assert boolean_for_number(Top, {"items": [{"name": "x", "inner": {"epochs": True}}]}) == (
        "items", 0, "inner", "epochs")
    assert boolean_for_number(Top, {"items": [{"inner": {"epochs": True}}]},
                              into_models=False) is None
