"""Automatic checks for the chapters' exercises: one module per chapter, one function per exercise.

A notebook imports its chapter's module, e.g. ``from vitcourse.checks import ch01_patches as check``
and calls ``check.patchify(patchify)`` in the cell after the exercise.
"""
from ._core import (DIFFICULTIES, ExerciseError, ExerciseInfo, Unanswered, exercise, expect_close,
                    expect_equal, expect_shape, expect_true, registered_exercises, unanswered)

__all__ = ["DIFFICULTIES", "ExerciseError", "ExerciseInfo", "Unanswered", "exercise", "expect_close",
           "expect_equal", "expect_shape", "expect_true", "registered_exercises", "unanswered"]
