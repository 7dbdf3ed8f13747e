"""Automatic checks for the chapters' exercises: one module per chapter, one function per exercise.

A notebook imports its chapter's module, e.g. ``from vitcourse.checks import ch01_patches as check``
and calls ``check.patchify(patchify)`` in the cell after the exercise.
"""
from ._core import ExerciseError, exercise, expect_close, expect_equal, expect_shape, expect_true

__all__ = ["ExerciseError", "exercise", "expect_close", "expect_equal", "expect_shape", "expect_true"]
