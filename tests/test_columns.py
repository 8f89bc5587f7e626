"""Score tables line up in a terminal whatever script a student id is in: padding counts the
columns a terminal draws (王芳 is four, a combining accent none), not code points."""
from course_lib.grading.columns import ljust, rjust, width
from course_lib.grading.report import score_table

WIDE = "王芳_10004"          # 8 code points, 10 columns
COMBINING = "jose\u0301_12"  # josé with U+0301: 8 code points, 7 columns
PLAIN = "plain_1"            # 7 and 7

SCORES = {(WIDE, "01_chain_rule"): {"q1": (1, 2), "q2": (3, 3)},
          (WIDE, "02_manual_backprop"): {"q1": (2, 2)},
          (COMBINING, "01_chain_rule"): {"q1": (2, 2), "q2": (0, 3)},
          (PLAIN, "02_manual_backprop"): {"q1": (0, 2)}}


def test_width_counts_terminal_columns():
    assert [width(s) for s in (WIDE, COMBINING, PLAIN, "ｆｕｌｌ", "a\u200db")] == [10, 7, 7, 8, 2]
    assert ljust(WIDE, 12) == WIDE + "  " and rjust(COMBINING, 9) == "  " + COMBINING


def test_the_totals_table_lines_up_wide_and_combining_names():
    lines = score_table(SCORES, width=80).splitlines()[1:5]
    # names padded to 12 columns (the widest id, 10, and 2), then 11 columns per assignment
    assert lines == ["student" + " " * 5 + " " * 9 + "01" + " " * 9 + "02",
                     COMBINING + " " * 5 + " " * 8 + "2/5" + " " * 10 + "-",
                     PLAIN + " " * 5 + " " * 10 + "-" + " " * 8 + "0/2",
                     WIDE + " " * 2 + " " * 8 + "4/5" + " " * 8 + "2/2"]


def test_the_question_table_lines_up_wide_and_combining_names():
    table = score_table(SCORES, {"01_chain_rule": ["q1", "q2"]}, verbose=True, width=200)
    block = table.split("\n01_chain_rule\n")[1].split("\n\n")[0].splitlines()
    # one column per student, 12 columns wide (the widest id and 2), ids right-aligned
    assert block == ["question" + "  " + " " * 5 + COMBINING + " " * 5 + PLAIN + "  " + WIDE,
                     "q1" + " " * 8 + " " * 9 + "2/2" + " " * 11 + "-" + " " * 9 + "1/2",
                     "q2" + " " * 8 + " " * 9 + "0/3" + " " * 11 + "-" + " " * 9 + "3/3"]
