"""The Korean and Japanese editions: complete, current catalogs; notebooks/ko and notebooks/ja
generated from them (the English code cells, unchanged); the exercise checks speaking the
edition's language; student copies and grading working on an edition as on the English chapters.

The browser checks of the editions' book sites are in tests/test_book.py.
"""
from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tools import translations as tr
from tools.book import chapters
from vitcourse import i18n
from vitcourse.exercises import student as student_cmd
from vitcourse.exercises.grade import grade

ROOT = Path(__file__).resolve().parents[1]

CHAPTERS = chapters()
CATALOGS = sorted((ROOT / "locales").glob("*/LC_MESSAGES/*.po"))
PAGES = [*CHAPTERS, *sorted((ROOT / "notebooks").glob("*.md"))]  # the chapters, index.md and the other pages
EDITIONS = [(lang, chapter) for lang in tr.LANGUAGES for chapter in CHAPTERS]
SCRIPT = {"ko": r"[\uac00-\ud7a3]", "ja": r"[\u3040-\u30ff\u4e00-\u9fff]"}  # Hangul; kana and kanji


# -- the catalogs ------------------------------------------------------------------------------

def test_every_page_of_the_book_has_a_catalog_in_each_language():
    have = {(p.parent.parent.name, p.stem) for p in CATALOGS}
    missing = [(lang, page.stem) for lang in tr.LANGUAGES for page in PAGES if (lang, page.stem) not in have]
    assert not missing, f"no catalog for {missing}: run `make translations`"
    assert len(CATALOGS) == len(tr.LANGUAGES) * len(PAGES)


@pytest.mark.parametrize("catalog", CATALOGS, ids=[f"{p.parent.parent.name}-{p.stem}" for p in CATALOGS])
def test_every_translation_keeps_code_maths_links_numbers_placeholders_and_markup(catalog):
    """A message not yet translated (or fuzzy after the English changed) is shown in English and
    is counted by `make translations`; a translation that breaks what it must keep fails here."""
    s = tr.stats(catalog)
    assert s.messages > 0
    problems = [p for p in tr.check(catalog) if not p.split(": ")[1].startswith(("untranslated", "fuzzy"))]
    assert not problems, f"{len(problems)} problems, e.g.\n" + "\n".join(problems[:10])


@pytest.mark.slow
def test_every_catalog_holds_todays_english_text(tmp_path):
    """A chapter whose text changed without `make translations` fails here (a Sphinx gettext
    build of the book, nothing executed, compared message by message with the catalogs)."""
    problems = tr.stale(pot_dir=tmp_path / "_build" / "gettext")
    assert not problems, "run `make translations`, then translate what it marks:\n" + "\n".join(problems)


def test_the_staleness_check_notices_a_changed_chapter(tmp_path, monkeypatch):
    # a template with one message changed and one added, against a catalog of the old text
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    pots = tmp_path / "_build" / "gettext"
    pots.mkdir(parents=True)
    locales = tmp_path / "locales"
    old, new = Catalog(), Catalog()
    for m in ("Patches.", "Tokens."):
        old.add(m, "번역")
    for m in ("Patches.", "Tokens, now changed.", "A new paragraph."):
        new.add(m)
    (locales / "ko" / "LC_MESSAGES").mkdir(parents=True)
    with open(pots / "01_x.pot", "wb") as f:
        write_po(f, new)
    with open(locales / "ko" / "LC_MESSAGES" / "01_x.po", "wb") as f:
        write_po(f, old)
    monkeypatch.setattr(tr, "extract", lambda pot_dir=None, source=None: sorted(pots.glob("*.pot")))
    problems = tr.stale(("ko", "ja"), locales, pots)
    assert problems == ["ko/01_x.po: 2 new English messages ['A new paragraph.', 'Tokens, now changed.'], "
                        "1 no longer in the chapter", "ja/01_x.po: missing"]


# -- the edition notebooks ---------------------------------------------------------------------

def test_the_committed_edition_notebooks_are_generated_from_todays_chapters_and_catalogs():
    generated = tr.editions()
    committed = {p for lang in tr.LANGUAGES for p in (ROOT / "notebooks" / lang).glob("*.ipynb")}
    assert committed == set(generated), (
        f"notebooks/ko, notebooks/ja: missing {sorted(str(p) for p in set(generated) - committed)}, "
        f"extra {sorted(str(p) for p in committed - set(generated))}: run `make translations`")
    outdated = [str(p.relative_to(ROOT)) for p, text in generated.items()
                if p.read_text(encoding="utf-8") != text]
    assert not outdated, f"out of date (a chapter or a catalog changed): {outdated}; run `make translations`"


@pytest.mark.parametrize("lang,chapter", EDITIONS, ids=[f"{lang}-{c.stem}" for lang, c in EDITIONS])
def test_an_edition_is_the_english_code_with_translated_prose(lang, chapter):
    english = nbformat.read(str(chapter), as_version=4)
    edition = nbformat.read(str(ROOT / "notebooks" / lang / chapter.name), as_version=4)
    assert [c.id for c in edition.cells] == [c.id for c in english.cells]
    assert [c.cell_type for c in edition.cells] == [c.cell_type for c in english.cells]
    for en, ed in zip(english.cells, edition.cells):
        if en.cell_type != "code":
            continue
        assert ed.metadata == en.metadata
        if "colab-setup" in en.metadata.get("tags", []):
            assert ed.source == en.source.replace("/notebooks", f"/notebooks/{lang}")
        else:
            assert ed.source == en.source, f"cell {en.id} differs from the English chapter's"
    # the prose is in the edition's script as far as the catalog is translated (a sentence not yet
    # translated reads in English)
    stats = tr.stats(ROOT / "locales" / lang / "LC_MESSAGES" / f"{chapter.stem}.po")
    script = SCRIPT[lang]
    prose = " ".join(c.source for c in edition.cells if c.cell_type == "markdown")
    if stats.translated == stats.messages:
        assert len(re.findall(script, prose)) > 0.3 * sum(ch.isalpha() for ch in prose)
    else:  # (which sentences: the generated-from-catalogs test above checks each one)
        assert stats.translated == 0 or re.search(script, prose)
    assert f"/blob/main/notebooks/{lang}/{chapter.name})" in edition.cells[0].source  # its own badge
    assert edition.metadata["language"] == lang


# -- the checks' messages ----------------------------------------------------------------------

MESSAGE_CATALOGS = [tr.message_catalog_path(lang) for lang in tr.LANGUAGES]


@pytest.mark.parametrize("catalog", MESSAGE_CATALOGS, ids=list(tr.LANGUAGES))
def test_the_checks_messages_are_current_compiled_and_keep_their_fields(catalog):
    """A message not yet translated is printed in English (gettext's fallback); one whose
    translation drops or renames a field would raise in `.format`, so that fails here."""
    assert catalog.is_file(), f"no {catalog}: run `make translations`"
    problems = [p for p in tr.check_messages(catalog) if not p.endswith((": untranslated", ": fuzzy"))]
    assert not problems, "\n".join(problems[:10])
    have = {m.id for m in tr.read_catalog(catalog) if m.id}
    today = set(tr.message_templates())
    assert have == today, (f"{len(today - have)} new templates, {len(have - today)} gone: "
                           "run `python -m tools.translations messages` (then translate the new ones)")
    mo = catalog.with_suffix(".mo")
    assert mo.is_file() and mo.read_bytes() == tr.compiled(catalog), f"{mo} is not compiled from {catalog.name}"


def test_every_student_visible_message_of_the_checks_is_a_template():
    """No f-string left inside an ExerciseError or expect_true message of the checks: it could
    not be translated (the template is looked up before its fields are filled)."""
    offenders = []
    for path in sorted((ROOT / "vitcourse" / "checks").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"(?:ExerciseError|expect_true\([^,]+,)\(?\s*f[\"']", text):
            offenders.append(f"{path.name}:{text[:m.start()].count(chr(10)) + 1}")
    assert not offenders, offenders
    assert len(tr.message_templates()) > 100


def test_the_language_comes_from_the_variable_or_the_notebooks_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(i18n.ENV, raising=False)
    for folder, lang in (("ko", "ko"), ("ja", "ja"), ("notebooks", "en")):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        assert i18n.language() == lang
    monkeypatch.setenv(i18n.ENV, "ja")
    assert i18n.language() == "ja"
    monkeypatch.setenv(i18n.ENV, "fr")
    with pytest.raises(ValueError, match="VITCOURSE_LANG must be one of en, ko, ja, got 'fr'"):
        i18n.language()


@pytest.mark.parametrize("lang", ["ko", "ja"])
def test_a_wrong_answer_is_explained_in_the_editions_language(lang, monkeypatch):
    from vitcourse.checks import ExerciseError
    from vitcourse.checks import ch01_patches as check

    def no_permute(tokens, patch_size, image_size):  # a single reshape: the right shape, the wrong order
        return tokens.reshape(tokens.shape[0], -1, *image_size)

    monkeypatch.setenv(i18n.ENV, lang)
    with pytest.raises(ExerciseError) as wrong:
        check.unpatchify(no_permute)
    text = str(wrong.value)
    script = SCRIPT[lang]
    assert "01.2" in text and len(re.findall(script, text)) > 10, text
    assert i18n.translate("unpatchify: put a sequence of patches back into images", lang) in text
    monkeypatch.setenv(i18n.ENV, "en")
    with pytest.raises(ExerciseError, match=r"^Exercise 01\.2 \(unpatchify: .*a single reshape"):
        check.unpatchify(no_permute)


# -- an edition as a student and an instructor use it ----------------------------------------

RUN_EDITIONS = [("ko", "01_patches.ipynb"), ("ja", "03_encoder_block.ipynb")]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("lang,name", RUN_EDITIONS, ids=[f"{lang}-{n[:2]}" for lang, n in RUN_EDITIONS])
def test_an_edition_chapter_runs_in_its_folder_with_nbval(lang, name):
    """One chapter per edition runs top to bottom where a student opens it (notebooks/<lang>/);
    the others run the same code cells, which nbval runs in the English chapters."""
    env = {**os.environ, "VITCOURSE_FAST": "1", "MPLBACKEND": "Agg"}
    env.pop(i18n.ENV, None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "--nbval-lax", "-p", "no:cacheprovider",
                           str(ROOT / "notebooks" / lang / name)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:]


@pytest.mark.integration
@pytest.mark.slow
def test_student_copies_and_grading_work_on_an_edition(tmp_path):
    """Student copies of the Korean chapter 01; the course's solution and the untouched copy,
    graded in the Korean folder: full marks and NotImplementedError, with Korean confirmations."""
    out = tmp_path / "student"
    assert student_cmd.main(student_cmd_args(["01_patches", "--notebooks", str(ROOT / "notebooks" / "ko"),
                                              "--out", str(out)])) == 0
    copy = out / "01_patches.ipynb"
    assert copy.is_file() and "패치" in copy.read_text(encoding="utf-8")
    subs = tmp_path / "ko"  # the grader's kernels run here: the Korean messages
    (subs / "ana").mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / "ko" / "01_patches.ipynb", subs / "ana" / "01_patches.ipynb")
    (subs / "bo").mkdir()
    shutil.copy(copy, subs / "bo" / "01_patches.ipynb")
    scores = tmp_path / "scores.csv"
    saved = {k: os.environ.get(k) for k in ("VITCOURSE_FAST", "MPLBACKEND", i18n.ENV)}
    os.environ.update(VITCOURSE_FAST="1", MPLBACKEND="Agg", VITCOURSE_LANG="ko")
    try:
        grade(subs, scores, timeout=300, cell_timeout=120, log=sys.stderr,
              source=ROOT / "notebooks" / "ko")
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    rows = {(r["student"], r["exercise"]): r for r in csv.DictReader(scores.open(encoding="utf-8"))}
    ids = sorted({ex for _, ex in rows})
    assert ids == ["01.1", "01.2", "01.3"]
    for ex in ids:
        assert rows[("ana", ex)]["passed"] == "1", rows[("ana", ex)]
        assert re.search(r"[\uac00-\ud7a3]", rows[("ana", ex)]["message"]), rows[("ana", ex)]
        assert rows[("bo", ex)]["passed"] == "0"
        assert rows[("bo", ex)]["message"].startswith("NotImplementedError"), rows[("bo", ex)]


def student_cmd_args(argv: list[str]):
    import argparse

    parser = argparse.ArgumentParser()
    student_cmd.add_arguments(parser)
    return parser.parse_args(argv)
