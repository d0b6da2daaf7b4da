"""Tests for migrator.equivalence: the exact-JSON comparison behind round-trip verification.

Most tests assert the full rendered difference, so a change in either the comparison
rule or the message format makes them fail.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrator import equivalence
from migrator.equivalence import (
    Difference,
    json_differences,
    json_equal,
    text_difference,
)


class DupDict(dict[Any, Any]):
    """Test stand-in for migrator.codec.DupDict: `.items()` returns every pair, in order.

    Like a dict built by json's object_pairs_hook, the mapping itself keeps the last
    value per key, so `==` and `len` alone cannot see the duplicates.
    """

    def __init__(self, pairs: Iterable[tuple[str, Any]]) -> None:
        self._pairs = list(pairs)
        super().__init__(self._pairs)

    def items(self) -> list[tuple[str, Any]]:  # type: ignore[override]
        return list(self._pairs)


def diffs(expected: Any, actual: Any, **kwargs: Any) -> list[str]:
    """Rendered differences, the form a person reads."""
    return [str(d) for d in json_differences(expected, actual, **kwargs)]


# --- Difference ----------------------------------------------------------------------


def test_difference_str_and_frozen() -> None:
    difference = Difference('$.session_queues["s 1"].items[3].data.n', "1 (int)", "1.0 (float)")
    assert str(difference) == '$.session_queues["s 1"].items[3].data.n: 1 (int) != 1.0 (float)'
    with pytest.raises(AttributeError):
        difference.path = "$"  # type: ignore[misc]


def test_reports_the_full_path_of_a_nested_difference() -> None:
    expected: Any = {"session_queues": {"s-1": {"items": [0, 1, 2, {"data": {"n": 1}}]}}}
    actual = copy.deepcopy(expected)
    actual["session_queues"]["s-1"]["items"][3]["data"]["n"] = 1.0
    assert diffs(expected, actual) == ['$.session_queues["s-1"].items[3].data.n: 1 (int) != 1.0 (float)']


# --- paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "step"),
    [
        ("name", ".name"),
        ("_x9", "._x9"),
        ("s1", ".s1"),
        ("9lives", '["9lives"]'),
        ("a b", '["a b"]'),
        ("a.b", '["a.b"]'),
        ("", '[""]'),
        ('q"uote', '["q\\"uote"]'),
        ("caf\u00e9", '["caf\\u00e9"]'),  # identifiers are ASCII-only
        ("line\n", '["line\\n"]'),  # a trailing newline must not pass as an identifier
    ],
)
def test_path_spells_keys_as_names_or_quoted(key: str, step: str) -> None:
    assert diffs({key: 1}, {key: 2}) == [f"${step}: 1 (int) != 2 (int)"]


def test_root_and_index_paths() -> None:
    assert diffs(1, 2) == ["$: 1 (int) != 2 (int)"]
    assert diffs([[0, 1]], [[0, 2]]) == ["$[0][1]: 1 (int) != 2 (int)"]


# --- scalars -------------------------------------------------------------------------


def test_int_is_not_float() -> None:
    assert diffs({"a": {"n": 1}}, {"a": {"n": 1.0}}) == ["$.a.n: 1 (int) != 1.0 (float)"]
    assert not json_equal(1, 1.0)


@pytest.mark.parametrize(
    ("expected", "actual", "message"),
    [
        (True, 1, "$: true (bool) != 1 (int)"),
        (1, True, "$: 1 (int) != true (bool)"),
        (False, 0, "$: false (bool) != 0 (int)"),
        (False, 0.0, "$: false (bool) != 0.0 (float)"),
        (True, False, "$: true (bool) != false (bool)"),
        (None, 0, "$: null (null) != 0 (int)"),
        (None, False, "$: null (null) != false (bool)"),
        ("1", 1, '$: "1" (str) != 1 (int)'),
        ([], {}, "$: [] (array) != {} (object)"),
    ],
)
def test_types_are_exact(expected: Any, actual: Any, message: str) -> None:
    assert diffs(expected, actual) == [message]
    assert not json_equal(expected, actual)


def test_negative_zero_is_not_zero() -> None:
    assert diffs([-0.0], [0.0]) == ["$[0]: -0.0 (float) != 0.0 (float)"]
    assert json_equal(-0.0, -0.0)
    assert json_equal(0.0, 0.0)


def test_nan_equals_nan() -> None:
    nan = float("nan")
    assert json_equal({"x": nan}, {"x": float("nan")})
    assert json_equal(nan, -nan)  # JSON cannot carry a NaN's sign or payload
    assert diffs(nan, 0.0) == ["$: NaN (float) != 0.0 (float)"]
    assert diffs(1.0, nan) == ["$: 1.0 (float) != NaN (float)"]


def test_infinities_are_kept_and_signed() -> None:
    inf = float("inf")
    assert json_equal([inf, -inf], [math.inf, -math.inf])
    assert diffs(inf, -inf) == ["$: Infinity (float) != -Infinity (float)"]
    assert diffs(inf, 1e308) == ["$: Infinity (float) != 1e+308 (float)"]


def test_floats_compare_exactly() -> None:
    assert diffs(0.1 + 0.2, 0.3) == ["$: 0.30000000000000004 (float) != 0.3 (float)"]
    assert diffs(5e-324, 0.0) == ["$: 5e-324 (float) != 0.0 (float)"]


def test_big_ints_are_kept() -> None:
    big = 2**100 + 1
    assert json_equal(big, 2**100 + 1)
    assert diffs(big, big - 1) == ["$: 1267650600228229401496703205377 (int) != 1267650600228229401496703205376 (int)"]
    # Past the display width, the digits are windowed to show where they differ.
    assert diffs(10**80 + 1, 10**80 + 2) == [f"$: ...{'0' * 53}1 (int) != ...{'0' * 53}2 (int)"]
    assert diffs(2**64, float(2**64)) == ["$: 18446744073709551616 (int) != 1.8446744073709552e+19 (float)"]


def test_ints_too_long_for_decimal_still_compare() -> None:
    huge = 10**5000  # past Python's default 4300-digit str() limit
    assert json_equal(huge, 10**5000)
    [difference] = json_differences(huge, huge + 1)
    assert difference.expected != difference.actual
    assert difference.expected.endswith(("0> (int)", "0 (int)"))  # hex or decimal, by the int limit
    assert difference.actual.endswith(("1> (int)", "1 (int)"))


def test_strings_are_not_normalised() -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert diffs(composed, decomposed) == ['$: "caf\\u00e9" (str) != "cafe\\u0301" (str)']
    assert diffs("a", "a ") == ['$: "a" (str) != "a " (str)']
    assert diffs("A", "a") == ['$: "A" (str) != "a" (str)']
    assert json_equal("\ud800", "\ud800")  # lone surrogates survive too


# --- rendering -----------------------------------------------------------------------


def test_long_values_are_truncated() -> None:
    [difference] = json_differences({"k": list(range(1000))}, {"k": "short"})
    assert difference.expected.endswith("... (array)")
    assert len(difference.expected) <= 75
    assert difference.actual == '"short" (str)'


def test_long_strings_are_windowed_around_their_difference() -> None:
    expected = "x" * 500 + "tail-A" + "y" * 500
    actual = "x" * 500 + "tail-B" + "y" * 500
    [difference] = json_differences(expected, actual)
    assert "tail-A" in difference.expected
    assert "tail-B" in difference.actual
    assert difference.expected.startswith("...")
    assert difference.expected.endswith("... (str)")
    assert len(difference.expected) <= 75


# --- objects -------------------------------------------------------------------------


def test_key_order_matters() -> None:
    expected = {"a": {"x": 1, "y": 2}}
    actual = {"a": {"y": 2, "x": 1}}
    assert expected == actual  # Python alone would call these equal
    assert diffs(expected, actual) == ['$.a: key order ["x", "y"] != ["y", "x"]']
    assert not json_equal(expected, actual)


def test_key_order_and_value_differences_are_both_reported() -> None:
    assert diffs({"x": 1, "y": 2}, {"y": 3, "x": 1}) == [
        '$: key order ["x", "y"] != ["y", "x"]',
        "$.y: 2 (int) != 3 (int)",
    ]


def test_missing_and_extra_keys_are_reported_per_key() -> None:
    expected = {"keep": 1, "gone": [1, 2], "also_gone": None}
    actual = {"keep": 1, "new": "x"}
    assert diffs(expected, actual) == [
        "$.gone: [1, 2] (array) != <missing>",
        "$.also_gone: null (null) != <missing>",
        '$.new: <missing> != "x" (str)',
    ]


def test_a_missing_key_alone_is_not_an_order_change() -> None:
    assert diffs({"a": 1, "b": 2, "c": 3}, {"a": 1, "c": 3}) == ["$.b: 2 (int) != <missing>"]


def test_duplicate_keys_are_compared_in_order() -> None:
    expected = DupDict([("a", 1), ("a", 2)])
    assert json_equal(expected, DupDict([("a", 1), ("a", 2)]))
    assert diffs(expected, DupDict([("a", 1), ("a", 3)])) == ["$.a#2: 2 (int) != 3 (int)"]


def test_duplicate_keys_count() -> None:
    expected = DupDict([("a", 1), ("a", 2)])
    # A plain dict keeps only the last value: equal by ==, not as JSON.
    assert expected == {"a": 2}
    assert diffs(expected, {"a": 2}) == [
        "$.a: 1 (int) != 2 (int)",
        "$.a#2: 2 (int) != <missing>",
    ]
    assert diffs({"a": 1}, DupDict([("a", 1), ("a", 1)])) == ["$.a#2: <missing> != 1 (int)"]


def test_duplicate_key_order_matters() -> None:
    expected = DupDict([("a", 1), ("b", 2), ("a", 3)])
    actual = DupDict([("a", 1), ("a", 3), ("b", 2)])
    assert diffs(expected, actual) == ['$: key order ["a", "b", "a"] != ["a", "a", "b"]']


def test_duplicates_are_rendered_in_values() -> None:
    assert diffs({"o": DupDict([("k", 1), ("k", 2)])}, {"o": [1]}) == ['$.o: {"k": 1, "k": 2} (object) != [1] (array)']


def test_dup_dict_without_duplicates_equals_plain_dict() -> None:
    assert json_equal(DupDict([("a", 1), ("b", [2])]), {"a": 1, "b": [2]})


# --- arrays --------------------------------------------------------------------------


def test_array_length_and_surplus_elements() -> None:
    assert diffs([1, 2], [1, 2, 3]) == [
        "$: length 2 != 3",
        "$[2]: <missing> != 3 (int)",
    ]
    assert diffs({"a": [1, 2, 3]}, {"a": [1, 9]}) == [
        "$.a: length 3 != 2",
        "$.a[1]: 2 (int) != 9 (int)",
        "$.a[2]: 3 (int) != <missing>",
    ]


def test_array_order_matters() -> None:
    assert diffs([1, 2], [2, 1]) == [
        "$[0]: 1 (int) != 2 (int)",
        "$[1]: 2 (int) != 1 (int)",
    ]


# --- limit ---------------------------------------------------------------------------


def test_limit_caps_the_report_in_document_order() -> None:
    expected = list(range(100))
    actual = [n + 1 for n in range(100)]
    assert len(json_differences(expected, actual)) == 20
    assert diffs(expected, actual, limit=3) == [
        "$[0]: 0 (int) != 1 (int)",
        "$[1]: 1 (int) != 2 (int)",
        "$[2]: 2 (int) != 3 (int)",
    ]


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="limit"):
        json_differences(1, 2, limit=0)


# --- deep nesting --------------------------------------------------------------------

DEPTH = 10_000


def nest(leaf: Any, depth: int = DEPTH) -> Any:
    """Build `depth` levels of alternating arrays and objects around `leaf`, without recursion."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def test_deep_nesting_equal() -> None:
    assert json_equal(nest(1), nest(1))
    assert json_differences(nest(1), nest(1)) == []


def test_deep_nesting_difference_at_the_bottom() -> None:
    [difference] = json_differences(nest(1), nest(1.0))
    assert difference.path == "$" + "[0].k" * (DEPTH // 2)
    assert (difference.expected, difference.actual) == ("1 (int)", "1.0 (float)")


def test_deep_values_are_rendered_without_recursion() -> None:
    [difference] = json_differences({"a": nest(1)}, {"a": None})
    assert difference.expected.startswith("[{")
    assert difference.expected.endswith("... (array)")


# --- text differences ----------------------------------------------------------------


def test_text_difference() -> None:
    assert str(text_difference("data", '{"a": 1.0}', '{"a": 1.00}')) == (
        'data (text differs at character 9, line 1, column 10): "{\\"a\\": 1.0}" != "{\\"a\\": 1.00}"'
    )


def test_text_difference_multiline_and_context() -> None:
    expected = '{\n  "name": "' + "x" * 40 + '",\n  "n": 1\n}'
    actual = expected.replace('"n": 1', '"n": 1.0')
    difference = text_difference("data", expected, actual)
    assert difference is not None
    index = expected.index('"n": 1') + len('"n": 1')
    assert difference.path == f"data (text differs at character {index}, line 3, column 9)"
    assert difference.expected == '..."xxxxxxxxx\\",\\n  \\"n\\": 1\\n}"'
    assert difference.actual == '..."xxxxxxxxx\\",\\n  \\"n\\": 1.0\\n}"'


def test_text_difference_marks_end_of_text() -> None:
    assert (
        str(text_difference("t", "abc", "abcd"))
        == 't (text differs at character 3, line 1, column 4): "abc"<end> != "abcd"'
    )
    assert str(text_difference("t", "", "x")) == 't (text differs at character 0, line 1, column 1): ""<end> != "x"'


def test_text_difference_shows_escapes() -> None:
    difference = text_difference("t", '"caf\u00e9"', '"cafe\u0301"')
    assert (difference.expected, difference.actual) == ('"\\"caf\\u00e9\\""', '"\\"cafe\\u0301\\""')  # type: ignore[union-attr]


def test_identical_texts_have_no_difference() -> None:
    assert text_difference("t", "same", "same") is None


# --- properties ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=20,
)

# Few distinct, easily confused leaves and keys, so independently drawn pairs are often
# equal or nearly equal: the interesting case for the comparison.
confusable_leaves = st.sampled_from([None, False, True, 0, 1, 0.0, -0.0, 1.0, math.nan, math.inf, "", "0", "1"])
confusable_values = st.recursive(
    confusable_leaves,
    lambda children: (
        st.lists(children, max_size=2) | st.dictionaries(st.sampled_from(["a", "b"]), children, max_size=2)
    ),
    max_leaves=4,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_a_deep_copy_is_equal(value: Any) -> None:
    assert json_equal(value, copy.deepcopy(value))
    assert json_differences(value, copy.deepcopy(value)) == []


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.tuples(json_values, json_values),
        st.tuples(confusable_values, confusable_values),
    )
)
def test_no_differences_iff_same_json_text(pair: tuple[Any, Any]) -> None:
    expected, actual = pair
    found = json_differences(expected, actual)
    same_text = json.dumps(expected) == json.dumps(actual)
    # Equal => same text is the safety property; the converse shows nothing is over-reported
    # (these values' JSON spelling is unique, with every NaN spelled "NaN").
    assert (found == []) == same_text
    assert json_equal(expected, actual) == same_text
    # The shortcut before the walk never calls two values equal that the walk itself would not.
    if equivalence._identical_at_c_speed(expected, actual):
        assert list(equivalence._walk(expected, actual)) == []


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        ({1: 0}, {"1": 0}),  # the same text, a different key
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),  # equal for Python, in another order
        ([True, 1], [1, 1.0]),
        ([-0.0], [0.0]),
        (DupDict([("a", 1), ("a", 1)]), {"a": 1}),  # equal for Python, a pair more
        ([float("nan")], [float("nan")]),  # two NaNs: not `==`, and still equal JSON
    ],
)
def test_the_shortcut_leaves_every_case_python_or_the_text_confuses_to_the_walk(expected: Any, actual: Any) -> None:
    assert not equivalence._identical_at_c_speed(expected, actual)
