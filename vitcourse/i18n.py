"""The language of the exercise checks' messages: English, 한국어 or 日本語.

The checks (`vitcourse.checks`) say what is wrong in the language of the chapter the student reads.
The language is

1. ``VITCOURSE_LANG`` (``en``, ``ko`` or ``ja``) when it is set, else
2. the name of the folder the kernel runs in when it is an edition's (``notebooks/ko``,
   ``notebooks/ja``: Jupyter starts a notebook's kernel in its folder, and the editions' Colab
   set-up cell enters it), else
3. English.

The translations are a gettext catalog per language, ``vitcourse/locales/<lang>/LC_MESSAGES/
vitcourse.po``, compiled to the ``.mo`` the standard library's `gettext` reads (both committed;
``make translations`` extracts the messages and compiles the catalogs, see tools/translations.py).
A message the catalog lacks stays English. Messages are templates with named fields, translated
before the fields are filled: ``_("{what} is wrong: expected {expected}").format(...)``.
"""
from __future__ import annotations

import gettext
import os
from functools import lru_cache
from pathlib import Path

LANGUAGES: tuple[str, ...] = ("en", "ko", "ja")
LOCALE_DIR = Path(__file__).resolve().parent / "locales"
DOMAIN = "vitcourse"
ENV = "VITCOURSE_LANG"
# The line a passing exercise check prints (vitcourse.checks), which the grader looks for in
# every language (vitcourse.exercises.grade); here so the grader need not import torch.
PASSED = "Exercise {exercise_id} passed: {title}."  # (extracted by tools/translations.py by name)
# What a student copy has where the answer was (vitcourse.exercises.notebook), in the copy's language.
STUB_COMMENT = "# YOUR CODE HERE"
STUB_REPLACE = "# YOUR CODE HERE: replace the lines below with your answer"
STUB_MESSAGE = "Exercise {exercise_id}: replace this stub with your code"
MODULE_MESSAGES = (PASSED, STUB_COMMENT, STUB_REPLACE, STUB_MESSAGE)  # (extracted by tools/translations.py)


def language() -> str:
    """The language the messages are in now (read at every call: a notebook may set the variable)."""
    chosen = os.environ.get(ENV, "").strip()
    if chosen:
        if chosen not in LANGUAGES:
            raise ValueError(f"{ENV} must be one of {', '.join(LANGUAGES)}, got {chosen!r}")
        return chosen
    folder = Path.cwd().name
    return folder if folder in LANGUAGES else "en"


@lru_cache(maxsize=None)
def _catalog(lang: str) -> gettext.NullTranslations:
    if lang == "en":
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, localedir=str(LOCALE_DIR), languages=[lang], fallback=True)


def folder_language(path: str | Path) -> str:
    """The language of a notebook by its folder: ``notebooks/ko/05_training.ipynb`` -> ``ko``."""
    folder = Path(path).parent.name
    return folder if folder in LANGUAGES else "en"


def translate(message: str, lang: str | None = None) -> str:
    """`message` (an English template) in `lang` (default: `language()`)."""
    return _catalog(lang or language()).gettext(message)


_ = translate


def every_translation(message: str) -> list[str]:
    """`message` in every language, English first (e.g. for the grader, which recognises a
    check's confirmation line whatever the language the submission ran in)."""
    return list(dict.fromkeys(translate(message, lang) for lang in LANGUAGES))
