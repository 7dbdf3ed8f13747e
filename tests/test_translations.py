"""tools/translations.py: the ko / ja editions' machinery (the catalogs' completeness is tested
with the editions themselves)."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tools import translations as tr

ROOT = Path(__file__).resolve().parents[1]


def test_markdown_blocks_are_translated_and_their_markers_kept():
    source = ("## 2. Cutting an image\n\nTake a batch of shape $(B, C)$ and a\npatch size $P$:\n\n"
              "1. **reshape** to $(B, C)$: split\n   each axis;\n2. permute.\n\n> a quote\n> over lines\n\n"
              "| ViT | ViT, patch 7 |\n|---|---|\n| `vit` | b |\n\n$$\nx = 1\n$$\n\n```python\nx = 2\n```")
    seen = []

    def translate(message: str) -> str:
        seen.append(message)
        return {"ViT": "모델 ViT", "ViT, patch 7": "ViT, 패치 7"}.get(message, f"<{message}>")

    out = tr.translate_markdown(source, translate)
    assert out.split("\n") == [
        "## <2. Cutting an image>", "", "<Take a batch of shape $(B, C)$ and a patch size $P$:>", "",
        "1. <**reshape** to $(B, C)$: split each axis;>", "2. <permute.>", "", "> <a quote over lines>", "",
        "| 모델 ViT | ViT, 패치 7 |", "|---|---|", "| <`vit`> | <b> |", "", "$$", "x = 1", "$$", "",
        "```python", "x = 2", "```"]
    # the messages are the text as Sphinx extracts it: lines joined by spaces; maths and code blocks are not messages
    assert "Take a batch of shape $(B, C)$ and a patch size $P$:" in seen and not any("x = " in m for m in seen)


def test_every_chapters_markdown_survives_the_identity_translation():
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in nbformat.read(str(path), as_version=4).cells:
            if cell.cell_type == "markdown":
                out = tr.translate_markdown(cell.source, lambda m: m)
                assert out.split() == cell.source.split(), (path.name, cell.source[:80])


def test_the_checker_names_what_a_translation_changed():
    ok = tr.message_problems("Use `fit` with $x^2$ on 60,000 images ([D2L](https://d2l.ai)).",
                             "`fit`을 $x^2$와 함께 60,000개 이미지에 사용합니다([D2L](https://d2l.ai)).", "ko")
    assert ok == []
    assert tr.message_problems("Use `fit`.", "", "ko") == ["untranslated"]
    bad = tr.message_problems("Use `fit` with $x^2$ on 60,000 images.", "`fits` と $x^3$ で 6万枚。", "ja")
    assert any(p.startswith("inline code differs") for p in bad) and any(p.startswith("maths differs") for p in bad)
    assert any("numbers missing: ['60,000']" in p for p in bad)
    moved = tr.message_problems("see [here](https://a.org/x)", "[여기](https://a.org/y)를 보세요", "ko")
    assert moved and moved[0].startswith("link targets differ")


def test_an_editions_colab_badge_opens_its_own_notebook():
    badge = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
             "(https://colab.research.google.com/github/vitcourse/vitcourse/blob/main/notebooks/01_patches.ipynb)")
    ko = tr.edition_badge(badge, "ko")
    assert ko.endswith("/blob/main/notebooks/ko/01_patches.ipynb)") and "colab-badge.svg" in ko
    assert tr.message_problems(badge, ko, "ko") == []
    assert tr.message_problems(badge, badge, "ko")  # the English notebook's link is a mistake there


def test_fill_sets_translations_and_check_reports_the_rest(tmp_path):
    folder = tmp_path / "ko" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    catalog = folder / "x.po"
    catalog.write_text('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
                       'msgid "A patch."\nmsgstr ""\n\n#, fuzzy\nmsgid "Two `tokens`."\nmsgstr "두 토큰."\n',
                       encoding="utf-8")
    # a fuzzy message is not used (the English shows), so only its fuzziness is reported
    assert sorted(p.split(": ")[1] for p in tr.check(catalog)) == ["fuzzy", "untranslated"]
    assert tr.fill(catalog, {"A patch.": "패치 하나.", "Two `tokens`.": "`tokens` 두 개."}) == 2
    assert tr.check(catalog) == []
    lookup = tr.catalog_lookup(catalog)
    assert lookup("A patch.") == "패치 하나."
    with pytest.raises(KeyError, match="no translation of 'Three.'"):
        lookup("Three.")
    with pytest.raises(ValueError, match="1 msgids are not in x.po"):
        tr.fill(catalog, {"Not there.": "없음."})


def test_a_translation_that_starts_like_a_block_is_escaped():
    # Sphinx parses each translation as markdown on its own: "2. Title" would be a list and dropped
    assert tr.escape_block_start("2. 이미지를 패치로 자르기") == "2\\. 이미지를 패치로 자르기"
    assert tr.escape_block_start("- 항목") == "\\- 항목" and tr.escape_block_start("2.5배 빠름") == "2.5배 빠름"
    assert tr.message_problems("2. Cutting", "2. 자르기", "ko")[0].startswith("starts like a markdown block")
    assert tr.message_problems("2. Cutting", "2\\. 자르기", "ko") == []


def test_broken_emphasis_and_changed_placeholders_are_problems():
    # CommonMark: a closing ** after a full-width bracket and before kana does not close
    broken = tr.message_problems("The **encoder block** is", "**エンコーダブロック（encoder block）**は", "ja")
    assert any(p.startswith("markup differs after rendering: strong_open 1 -> 0") for p in broken)
    assert tr.message_problems("The **encoder block** is", "**エンコーダブロック**（encoder block）は", "ja") == []
    moved = tr.message_problems("It reaches {{ vit_acc }}%.", "{{ vit_ac }}% に達する。", "ja")
    assert moved == ["placeholders differ: expected ['vit_acc'], got ['vit_ac']"]
    assert tr.message_problems("It reaches {{ vit_acc }}%.", "{{ vit_acc }}% に達する。", "ja") == []


def test_an_old_translation_is_carried_over_to_the_placeholders_of_its_message():
    facts = {"acc": 89.76, "epochs": 3, "best": "conv_stem_s"}
    template = "After {{ epochs }} epochs `{{ best }}` reaches {{ acc }}% (30 runs)."
    old = "{{ epochs }} 에포크 후 `{{ best }}`는 {{ acc }}%에 도달합니다(30회)."
    rendered_old = old.replace("{{ epochs }}", "3").replace("{{ best }}", "conv_stem_s").replace("{{ acc }}", "89.76")
    assert tr.with_placeholders(rendered_old, template, facts) == old  # 3 is not taken out of 30
    # two facts that read alike, or a value the translation lost: translated again, never guessed
    assert tr.with_placeholders("3 と 3", "{{ a }} and {{ b }}", {"a": 3, "b": 3}) is None
    assert tr.with_placeholders("에포크 후", "After {{ epochs }} epochs", facts) is None


def test_an_untranslated_message_reads_in_english_and_facts_fill_both_editions(tmp_path, monkeypatch):
    import nbformat as nbf

    from tools.catalogs import catalog_lookup, rendered_catalogs

    folder = tmp_path / "locales" / "ko" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    catalog = folder / "11_token_mixers.po"
    catalog.write_text('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
                       'msgid "Pooling reaches {{ pooling_mean_acc }}%."\nmsgstr "풀링은 {{ pooling_mean_acc }}%에 도달합니다."\n\n'
                       'msgid "A new sentence."\nmsgstr ""\n', encoding="utf-8")
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_markdown_cell("Pooling reaches {{ pooling_mean_acc }}%.\n\nA new sentence.")]
    edition = tr.edition_notebook(nb, "ko", catalog_lookup(catalog, fallback=True), {"pooling_mean_acc": 88.6})
    assert edition.cells[0].source == "풀링은 88.6%에 도달합니다.\n\nA new sentence."
    with pytest.raises(KeyError, match="no translation of 'A new sentence.'"):
        catalog_lookup(catalog)("A new sentence.")
    # the book's copy of the catalog: the facts filled into both sides, as Sphinx sees the page
    import tools.catalogs as cats
    monkeypatch.setattr(cats, "read_facts", lambda stem: {"pooling_mean_acc": 88.6})
    out = rendered_catalogs(tmp_path / "rendered", "ko", tmp_path / "locales")
    rendered = (out / "ko" / "LC_MESSAGES" / "11_token_mixers.po").read_text(encoding="utf-8")
    assert 'msgid "Pooling reaches 88.6%."\nmsgstr "풀링은 88.6%에 도달합니다."' in rendered


def test_a_number_touching_hangul_or_kana_is_found_and_alike_templates_each_get_one():
    facts = {"gap": 0.4, "a_epochs": 2, "b_epochs": 2}
    assert tr.with_placeholders("0.4포인트 높다", "{{ gap }} points higher", facts) == "{{ gap }}포인트 높다"
    assert tr.with_placeholders("差は0.4ポイント", "a gap of {{ gap }} points", facts) == "差は{{ gap }}ポイント"
    # a table cell of one number: one catalog message "2" becomes one message per template
    assert tr.with_placeholders("2", "{{ a_epochs }}", facts) == "{{ a_epochs }}"


def test_a_scaled_count_may_use_the_languages_own_units():
    assert tr.numbers_of("14 million images, 2.5 billion, 3 layers") == ["14000000", "2500000000", "3"]
    assert tr.numbers_of("1,400만 장, 25억, 3층") == ["14000000", "2500000000", "3"]
    assert tr.numbers_of("1,400 万枚、2.5 × 10⁹") == ["14000000", "2500000000"]
    assert tr.message_problems("It saw 14 million images.", "1,400만 장을 보았습니다.", "ko") == []
    assert tr.message_problems("It saw 14 million images.", "1,400 万枚を見ました。", "ja") == []
    assert tr.message_problems("It saw 14 million images.", "140만 장을 보았습니다.", "ko") == [
        "numbers missing: ['14000000']"]
