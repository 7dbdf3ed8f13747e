"""tools/translation_style.py: the editions' glosses and one word per term (locales/GLOSSARY.md)."""
from __future__ import annotations

from pathlib import Path

from tools import translation_style as style
from tools import translations as tr

ROOT = Path(__file__).resolve().parents[1]


def test_a_gloss_is_an_english_term_the_translation_adds():
    english = "Convolutions have an inductive bias; centred kernel alignment (CKA) compares them."
    korean = "합성곱에는 귀납적 편향(inductive bias)이 있습니다. 중심화 커널 정렬(CKA)로 비교합니다."
    assert style.glosses(english, korean) == ["inductive bias"]  # "(CKA)" is the English text's own
    japanese = "畳み込みには帰納バイアス（inductive bias）があります（`x (batch)` と $f(x)$ は数えません）。"
    assert style.glosses("Convolutions have an inductive bias.", japanese) == ["inductive bias"]
    assert style.glosses("Panel (a) shows it.", "패널 (a)가 보여 줍니다.") == []  # too short to be a term


def test_nested_touching_and_emphasised_glosses_are_problems():
    nested = style.gloss_problems("The MLP is ...", "MLP（フィードフォワードネットワーク（feed-forward network））は")
    assert nested == ["gloss 'feed-forward network' nested in another bracket"]
    touching = style.gloss_problems("the batch and position", "배치(batch)(와 위치)")
    assert touching == ["gloss 'batch' touches another bracket"]
    inside = style.gloss_problems("**fast mode** runs", "*빠른 모드(fast mode)*, 즉")
    assert inside == ["gloss 'fast mode' inside emphasis: put it after the closing marker"]
    assert style.gloss_problems("**fast mode** runs", "*빠른 모드*(fast mode)는") == []


def test_a_chapter_glosses_each_term_once_and_at_most_ten():
    once = [("a", "토큰(token)"), ("b", "토큰(token) 다시")]
    assert style.catalog_problems(once, "01.po") == ["01.po: gloss 'token' used 2 times: only at the term's first use"]
    many = [(f"m{i}", f"용어(term number {chr(97 + i)})") for i in range(style.MAX_GLOSSES + 1)]
    problems = style.catalog_problems(many, "02.po")
    assert len(problems) == 1 and problems[0].startswith("02.po: 11 English glosses, at most 10")
    assert style.catalog_problems(many[:-1], "02.po") == []


def test_the_glossarys_one_word_table_is_read_and_enforced():
    rules = style.variants()
    assert style.Variant("ja", "グリッド", "格子") in rules
    assert style.Variant("ja", "章", "chapter") in rules and style.Variant("ja", "章", "Chapter") in rules
    assert style.Variant("ko", "기준선", "바닥선") in rules
    assert style.term_problems("パッチの格子です。", "ja", rules) == ["write 'グリッド', not '格子'"]
    assert style.term_problems("パッチのグリッドです。", "ja", rules) == []
    assert style.term_problems("바닥선보다 낫습니다.", "ko", rules) == ["write '기준선', not '바닥선'"]
    assert style.term_problems("`grid_格子` は別です。", "ja", rules) == []  # code is never translated


def test_japanese_sets_half_width_text_off_by_a_space():
    assert style.term_problems("3エポックで ViTの精度", "ja", []) == [
        "a space between half-width and Japanese text: ['3エ', 'Tの']"]
    assert style.term_problems("3 エポックで ViT の精度は $N$の {{ acc }}%", "ja", []) == []
    assert style.term_problems("3에폭", "ko", []) == []  # Korean attaches particles


def test_check_and_stats_report_glosses_of_a_catalog(tmp_path):
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    catalog = Catalog(locale="ja")
    catalog.add("The inductive bias.", "帰納バイアス（inductive bias）です。")
    catalog.add("The grid.", "格子です。")
    path = tmp_path / "ja" / "LC_MESSAGES" / "01_x.po"
    path.parent.mkdir(parents=True)
    with open(path, "wb") as f:
        write_po(f, catalog)
    assert tr.stats(path).glosses == 1
    assert tr.check(path) == ["01_x.po: write 'グリッド', not '格子': 'The grid.'"]
    assert list(tr.todo(path)) == ["The grid."]
