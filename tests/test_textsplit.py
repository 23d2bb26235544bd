from hypothesis import given, settings
from hypothesis import strategies as st

from bot.textsplit import split_text


def test_short_text_is_one_piece():
    assert split_text("你好") == ["你好"]


def test_cuts_between_lines_with_suffix():
    text = "\n".join(["一二三四五"] * 10)  # 15 bytes a line
    pieces = split_text(text, limit=40, suffix="…")
    assert all(len(p.encode()) <= 40 for p in pieces)
    assert all(p.endswith("…") for p in pieces[:-1])
    assert "\n".join(p.removesuffix("…") for p in pieces) == text


def test_a_single_long_line_is_cut_by_characters():
    text = "条" * 1000
    pieces = split_text(text, limit=2048)
    assert [len(p.encode()) <= 2048 for p in pieces] == [True, True]
    assert "".join(pieces) == text


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=0, max_size=400), st.integers(min_value=8, max_value=120))
def test_nothing_is_lost_and_no_piece_is_too_long(text, limit):
    pieces = split_text(text, limit=limit)
    assert all(len(p.encode()) <= limit for p in pieces)
    # Only the line breaks at cut points may go.
    assert "".join(pieces).replace("\n", "") == text.replace("\n", "")
