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


def test_a_long_line_is_cut_after_its_last_sentence_that_fits():
    # It was cut at the byte limit, inside a word: "…行为承担（未完）" / "责任。…".
    sentences = [f"第{i}条：商家应对其经营行为承担责任，并遵守平台规则。" for i in range(1, 40)]
    text = "".join(sentences)
    pieces = split_text(text, limit=300, suffix="…")
    assert len(pieces) > 2 and all(len(p.encode()) <= 300 for p in pieces)
    assert all(p.endswith("。…") for p in pieces[:-1]), pieces
    assert all(p.startswith("第") for p in pieces), pieces
    assert "".join(p.removesuffix("…") for p in pieces) == text


def test_without_a_sentence_end_a_long_line_is_cut_after_a_comma():
    text = "，".join(["商家应对其经营行为承担责任"] * 40)
    pieces = split_text(text, limit=200)
    assert all(p.endswith("，") for p in pieces[:-1]) and "".join(pieces) == text


def test_a_sentence_keeps_its_closing_quote():
    text = "他说：“好的。”" * 60
    pieces = split_text(text, limit=200)
    assert all(p.endswith("。”") for p in pieces[:-1]) and "".join(pieces) == text


def test_below_earlier_lines_a_long_line_is_cut_at_its_best_place_that_fits():
    # Not before it: a notice's title line alone was one more message to send.
    first = "第一行。\n"
    text = first + "，".join(["商家应对其经营行为承担责任"] * 20) + "。"
    pieces = split_text(text, limit=200)
    assert pieces[0].startswith(first) and pieces[0].endswith("责任，") and all(len(p.encode()) <= 200 for p in pieces)
    unpunctuated = split_text("【服务公告】标题\n\n" + "长" * 800, limit=2048)
    assert len(unpunctuated) == 2 and unpunctuated[0].startswith("【服务公告】标题\n\n长")


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=0, max_size=400), st.integers(min_value=8, max_value=120))
def test_nothing_is_lost_and_no_piece_is_too_long(text, limit):
    pieces = split_text(text, limit=limit)
    assert all(len(p.encode()) <= limit for p in pieces)
    # Only the line breaks at cut points may go.
    assert "".join(pieces).replace("\n", "") == text.replace("\n", "")
