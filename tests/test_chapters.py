"""tools/chapters.py and tools/facts: chapters/NN_name.md is the one source of each notebook."""
from __future__ import annotations

import json
import shutil

import nbformat
import pytest

from tools import chapters as ch
from tools import facts as facts_mod

ROOT = ch.ROOT


def test_every_chapter_has_one_source_and_no_generator_script():
    stems = [p.stem for p in ch.sources()]
    assert stems == [p.stem for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    assert len(stems) >= 14
    assert not list((ROOT / "tools").glob("chapters/ch*.py")), "chapters are written in chapters/*.md"


def test_every_committed_notebook_is_what_its_source_builds():
    problems = ch.stale()
    assert not problems, "\n".join(problems)


@pytest.mark.results
def test_every_facts_file_is_what_the_committed_results_give():
    problems = facts_mod.stale()
    assert not problems, "\n".join(problems)


def test_every_placeholder_of_a_chapter_names_one_of_its_facts():
    for source in ch.sources():
        facts = ch.read_facts(source.stem)
        used = {name for cell in ch.read_source(source).cells if cell.cell_type == "markdown"
                for name in ch.placeholders(cell.source)}
        assert used <= set(facts), (source.name, sorted(used - set(facts)))
        unused = set(facts) - used
        assert not unused, f"{source.name}: facts no sentence quotes: {sorted(unused)}"


def _copy_course(tmp_path):
    """A copy of the chapter sources, notebooks and facts to edit without touching the repo."""
    for folder in ("chapters", "notebooks"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("ko", "ja"))
    shutil.copytree(ROOT / "data" / "facts", tmp_path / "facts")
    return tmp_path


def test_one_word_changed_in_a_source_changes_exactly_that_notebook(tmp_path, monkeypatch):
    course = _copy_course(tmp_path)
    monkeypatch.setattr(ch, "SOURCES", course / "chapters")
    source = course / "chapters" / "02_attention.md"
    text = source.read_text(encoding="utf-8")
    assert " query " in text
    source.write_text(text.replace(" query ", " inquiry ", 1), encoding="utf-8")
    before = {p.name: p.read_bytes() for p in (course / "notebooks").glob("*.ipynb")}
    changed = ch.build(ch.sources(course / "chapters"), notebooks=course / "notebooks")
    assert [p.name for p in changed] == ["02_attention.ipynb"]
    after = {p.name: p.read_bytes() for p in (course / "notebooks").glob("*.ipynb")}
    assert {n for n in before if before[n] != after[n]} == {"02_attention.ipynb"}
    nb = nbformat.read(str(course / "notebooks" / "02_attention.ipynb"), as_version=4)
    assert any(" inquiry " in c.source for c in nb.cells)
    # the build is deterministic: building again changes nothing
    assert ch.build(ch.sources(course / "chapters"), notebooks=course / "notebooks") == []


def test_the_notebook_has_the_badge_the_setup_cell_and_stable_ids():
    source = ROOT / "chapters" / "01_patches.md"
    nb = ch.build_notebook(source)
    assert nb.cells[0].source.startswith("# 01 · ") and "colab.research.google.com/github/" in nb.cells[0].source
    assert nb.cells[1].metadata["tags"] == [ch.SETUP_TAG] and "google.colab" in nb.cells[1].source
    assert [c.id for c in nb.cells] == [f"01-{i:03d}" for i in range(len(nb.cells))]
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert "colab" not in source.read_text(encoding="utf-8").lower()  # the source does not repeat them


def test_a_fact_is_filled_in_and_an_unknown_one_is_named(tmp_path):
    source = tmp_path / "99_demo.md"
    source.write_text("---\njupytext:\n  text_representation:\n    format_name: myst\n---\n\n"
                      "# 99 · Demo\n\nWhat you will learn.\n\n+++\n\n"
                      "The ViT reached {{ vit_acc }}% after {{epochs}} epochs on {{ images }} images.\n\n"
                      "```{code-cell} ipython3\nx = {'a': 1}  # {{ not a placeholder in code }}\n```\n",
                      encoding="utf-8")
    nb = ch.build_notebook(source, facts={"vit_acc": 89.76, "epochs": 3, "images": 60000})
    assert nb.cells[2].source == "The ViT reached 89.76% after 3 epochs on 60,000 images."
    assert nb.cells[3].source.endswith("# {{ not a placeholder in code }}")
    template = ch.template_notebook(source)
    assert "{{ vit_acc }}" in template.cells[2].source
    with pytest.raises(KeyError, match=r"99_demo.md, cell 2: no fact named 'epochs'"):
        ch.build_notebook(source, facts={"vit_acc": 89.76, "images": 1})


def test_bad_input_to_the_build_is_refused_with_its_argument():
    with pytest.raises(ValueError, match="chapters must be numbers like 04"):
        ch.select(["99"])
    with pytest.raises(FileNotFoundError, match="chapters/NN_name.md"):
        ch.read_source(ROOT / "chapters" / "missing.md")
    with pytest.raises(TypeError, match="a fact must be a string or a number"):
        ch.render_value([1, 2])


def test_facts_files_are_sorted_one_fact_a_line():
    for path in sorted((ROOT / "data" / "facts").glob("*.json")):
        facts = json.loads(path.read_text(encoding="utf-8"))
        assert path.read_text(encoding="utf-8") == facts_mod.text(facts)
        assert path.stem in [p.stem for p in ch.sources()]
