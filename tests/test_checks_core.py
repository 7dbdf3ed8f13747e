"""The building blocks of every exercise check (vitcourse.checks._core)."""
from __future__ import annotations

import pytest
import torch

from vitcourse.checks import (ExerciseError, Unanswered, exercise, expect_close, expect_equal,
                              expect_shape, expect_true, registered_exercises, unanswered)


@exercise("99.1", "square a number", difficulty="easy", minutes=3)
def check_square(student_square):
    for x in (0, 3, -2.5):
        expect_equal(f"square({x})", student_square(x), x * x)


def test_a_right_answer_prints_the_confirmation(capsys):
    check_square(lambda x: x * x)
    assert capsys.readouterr().out == "Exercise 99.1 passed: square a number.\n"


def test_a_wrong_answer_names_the_exercise_and_what_is_wrong(capsys):
    with pytest.raises(ExerciseError) as info:
        check_square(lambda x: 2 * x)
    assert str(info.value) == ("Exercise 99.1 (square a number): square(3) is wrong: expected 9, "
                               "got 6")
    assert capsys.readouterr().out == ""


def test_a_stub_is_reported_as_not_implemented():
    def stub(x):
        raise NotImplementedError("Exercise 99.1: replace this stub with your code")

    with pytest.raises(NotImplementedError) as info:
        check_square(stub)
    assert str(info.value) == ("Exercise 99.1 (square a number) is not implemented yet: replace "
                               "this stub with your code")

    def bare(x):
        raise NotImplementedError

    with pytest.raises(NotImplementedError, match="still raises NotImplementedError"):
        check_square(bare)


def test_an_unanswered_placeholder_is_reported_as_not_implemented():
    with pytest.raises(NotImplementedError, match=r"^Exercise 99\.1 \(square a number\) is not "
                                                  r"implemented yet: replace this stub"):
        check_square(unanswered("Exercise 99.1: replace this stub with your code"))
    with pytest.raises(NotImplementedError, match="99.1"):
        check_square((1, unanswered("Exercise 99.1: x")))  # one level into containers


def test_exercises_register_their_table_information():
    info = registered_exercises()["99.1"]
    assert (info.title, info.difficulty, info.minutes) == ("square a number", "easy", 3)
    assert info.check == f"{__name__}.check_square"
    assert (check_square.exercise_id, check_square.title) == ("99.1", "square a number")


def test_the_same_id_for_another_check_is_refused():
    with pytest.raises(ValueError, match=r"exercise_id '99.1' is already checked by"):
        @exercise("99.1", "something else")
        def another(x):
            pass


@pytest.mark.parametrize("args, kwargs, message", [
    (("1.1", "t"), {}, "exercise_id must look like '01.2'"),
    (("99.2", ""), {}, "title must be a non-empty string"),
    (("99.2", "t"), {"difficulty": "tricky"}, "difficulty must be one of"),
    (("99.2", "t"), {"minutes": 0}, "minutes must be a positive int"),
    (("99.2", "t"), {"minutes": 2.5}, "minutes must be a positive int"),
])
def test_bad_exercise_arguments_are_refused(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        exercise(*args, **kwargs)


def test_unanswered_raises_on_every_use_but_prints():
    value = unanswered("Exercise 99.3: write it")
    assert repr(value) == "<unanswered: Exercise 99.3: write it>"
    assert str(value) == repr(value)
    assert isinstance(value, Unanswered)
    uses = [lambda: value + 1, lambda: 2 * value, lambda: value(3), lambda: value[0],
            lambda: value == 16, lambda: bool(value), lambda: int(value), lambda: len(value),
            lambda: list(value), lambda: value.shape, lambda: torch.ones(2) @ value,
            lambda: range(value), lambda: hash(value)]
    for use in uses:
        with pytest.raises(NotImplementedError, match="^Exercise 99.3: write it$"):
            use()
    with pytest.raises(AttributeError):
        value._repr_html_()  # Jupyter's display falls back to repr


# --- comparisons ---------------------------------------------------------------------------------

def test_expect_shape():
    expect_shape("x", torch.zeros(2, 3), (2, 3))
    with pytest.raises(ExerciseError, match=r"^x has the wrong shape: expected \(4, 2\), got \(2, 3\)$"):
        expect_shape("x", torch.zeros(2, 3), (4, 2))
    with pytest.raises(ExerciseError, match=r"expected \(5, 3, 2\), got \(5, 2, 3\) \(the last two "
                                            r"axes are swapped: a missing or extra transpose\?\)$"):
        expect_shape("x", torch.zeros(5, 2, 3), (5, 3, 2))
    with pytest.raises(ExerciseError, match=r"got \(3, 2, 5\) \(the right sizes in another order"):
        expect_shape("x", torch.zeros(3, 2, 5), (5, 3, 2))
    with pytest.raises(ExerciseError, match="x should be a tensor, got object"):
        expect_shape("x", object(), (1,))


def test_expect_close_says_where_and_by_how_much():
    expected = torch.arange(6.0).reshape(2, 3)
    expect_close("y", expected + 1e-7, expected)
    got = expected.clone()
    got[1, 2] += 0.5
    with pytest.raises(ExerciseError) as info:
        expect_close("y", got, expected)
    assert str(info.value) == ("y has wrong values at 1 of 6 positions; first at index (1, 2): "
                               "expected 5, got 5.5; largest difference 0.5")
    with pytest.raises(ExerciseError, match="wrong shape: expected"):
        expect_close("y", expected.T, expected)


def test_expect_close_recognises_a_transpose_and_nan():
    expected = torch.arange(9.0).reshape(3, 3)
    with pytest.raises(ExerciseError, match=r"equals the transpose of the expected value"):
        expect_close("attn", expected.T, expected)
    bad = expected.clone()
    bad[0, 1] = float("nan")
    with pytest.raises(ExerciseError, match=r"contains NaN or inf \(first at index \(0, 1\)\)"):
        expect_close("attn", bad, expected)


def test_expect_equal_and_expect_true():
    expect_equal("n", 16, 16)
    with pytest.raises(ExerciseError, match=r"^n is wrong: expected 16, got 17$"):
        expect_equal("n", 17, 16)
    expect_true(True, "never shown")
    with pytest.raises(ExerciseError, match="^the message$"):
        expect_true(False, "the message")


# --- calling the student's code -------------------------------------------------------------------

def test_call_student_turns_a_shape_error_into_a_hint_naming_the_function():
    from vitcourse.checks._core import call_student

    def wrong(x):
        return torch.ones(2, 3) @ torch.ones(4, 5)

    with pytest.raises(ExerciseError, match=r"^my_fn raised RuntimeError: .*check which axis"):
        call_student("my_fn", wrong, 1)
    assert call_student("my_fn", lambda a, b: a + b, 1, 2) == 3


def test_call_student_lets_a_stub_through_so_the_exercise_reads_as_open():
    from vitcourse.checks._core import call_student

    def stub(x):
        raise NotImplementedError("Exercise 99.1: replace this stub with your code")

    with pytest.raises(NotImplementedError, match="replace this stub"):
        call_student("my_fn", stub, 1)


def test_the_ch12_checks_report_a_stub_as_not_implemented():
    from vitcourse.checks import ch12_robustness

    def stub(*args):
        raise NotImplementedError("Exercise 12.1: replace this stub with your code")

    with pytest.raises(NotImplementedError, match="not implemented yet"):
        ch12_robustness.linear_cka(stub)
