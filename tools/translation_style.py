"""How an edition reads, checked: English glosses and one word for each term (locales/GLOSSARY.md).

The editions gloss a term in English only where a reader would look it up, at its first use in a
chapter: ``귀납적 편향(inductive bias)``, ``帰納バイアス（inductive bias）``. This module finds
those glosses in a catalog's translations and names what the glossary's conventions forbid:

- more than `MAX_GLOSSES` glosses in one chapter, or the same term glossed twice;
- a gloss nested in another bracket or touching another one (``MLP（…（feed-forward network））``);
- a gloss inside ``**bold**`` or ``*italics*`` (the English term is not what is emphasised);
- a word the glossary's "One word each" table replaces (``グリッド`` where the editions write
  ``格子`` ...), and in Japanese a half-width letter or digit touching kana or kanji (the editions
  write ``3 エポック``, ``ViT の``, with a space, as most of the catalogs already did).

`tools/translations.py` adds these problems to ``check`` and the gloss count to ``stats``.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "locales" / "GLOSSARY.md"

MAX_GLOSSES = 10  # per chapter and language (issue 35: "at most ~10 per chapter")

# An English gloss: Latin letters (and spaces, hyphens, slashes, apostrophes) in brackets, at
# least three characters (so "(a)" panel labels and "(x)" are not glosses). Korean catalogs use
# ASCII brackets, Japanese ones full-width brackets (both are found in both).
GLOSS = re.compile(r"[(（]([A-Za-z][A-Za-z .,'/-]{2,})[)）]")
_OPEN, _CLOSE = "(（", ")）"
_CODE = re.compile(r"``[^`]+``|`[^`]+`")
_MATH = re.compile(r"\$\$.+?\$\$|\$[^$]+\$", re.S)
_LINK_TARGET = re.compile(r"\]\([^)\s]+\)")
_PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}")
JAPANESE = "\u3040-\u30ff\u4e00-\u9fff"  # kana and kanji
_TOUCHING = re.compile(rf"[A-Za-z0-9][{JAPANESE}]|[{JAPANESE}][A-Za-z0-9]")


def prose(text: str) -> str:
    """`text` without what is never translated (code, maths, link targets, placeholders)."""
    for pattern in (_CODE, _MATH, _LINK_TARGET, _PLACEHOLDER):
        text = pattern.sub(" ", text)
    return text


def _bracketed_in_english(msgid: str) -> set[str]:
    """The bracketed Latin terms of the English message itself: kept in a translation, they are
    not glosses (an English "(CKA)")."""
    return {m.strip().lower() for m in GLOSS.findall(prose(msgid))}


def glosses(msgid: str, msgstr: str) -> list[str]:
    """The English glosses `msgstr` adds: bracketed Latin terms the English message does not
    have in brackets."""
    english = _bracketed_in_english(msgid)
    return [g for g in GLOSS.findall(prose(msgstr)) if g.strip().lower() not in english]


def _depth_at(text: str, index: int) -> int:
    depth = 0
    for char in text[:index]:
        depth += (char in _OPEN) - (char in _CLOSE)
    return depth


def _emphasised_text(text: str) -> str:
    """The text inside emphasis (``*``, ``**``) as markdown-it renders `text`."""
    from tools.translations import _markdown_parser

    inside, depth = [], 0
    for token in _markdown_parser().parseInline(text):
        for child in token.children or []:
            if child.type in ("strong_open", "em_open"):
                depth += 1
            elif child.type in ("strong_close", "em_close"):
                depth -= 1
            elif child.type == "text" and depth > 0:
                inside.append(child.content)
    return " ".join(inside)


def gloss_problems(msgid: str, msgstr: str) -> list[str]:
    """What is wrong with the glosses of one translation: nested, touching another bracket, or
    inside emphasis."""
    text = prose(msgstr)
    english = _bracketed_in_english(msgid)
    problems = []
    for match in GLOSS.finditer(text):
        term = match.group(1)
        if term.strip().lower() in english:
            continue
        before, after = text[:match.start()].rstrip(" "), text[match.end():].lstrip(" ")
        if _depth_at(text, match.start()) > 0:
            problems.append(f"gloss {term!r} nested in another bracket")
        elif (before and before[-1] in _CLOSE) or (after and after[0] in _OPEN):
            problems.append(f"gloss {term!r} touches another bracket")
    emphasised = _emphasised_text(msgstr)
    for term in GLOSS.findall(emphasised):
        if term.strip().lower() not in english:
            problems.append(f"gloss {term!r} inside emphasis: put it after the closing marker")
    return problems


@dataclass(frozen=True)
class Variant:
    """One word the editions do not write, and the one they write instead."""
    lang: str
    write: str
    not_: str


def variants(glossary: Path = GLOSSARY) -> list[Variant]:
    """The glossary's "One word each" table: ``| language | write | not |`` rows."""
    rows, inside = [], False
    for line in glossary.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            inside = line.strip() == "## One word each"
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if inside and line.startswith("|") and len(cells) == 3 and cells[0] in ("ko", "ja"):
            for wrong in cells[2].split(","):
                rows.append(Variant(cells[0], cells[1].strip("`"), wrong.strip().strip("`")))
    return rows


def term_problems(msgstr: str, lang: str, rules: list[Variant] | None = None) -> list[str]:
    """A word the glossary replaces; in Japanese, a half-width letter or digit touching kana or
    kanji without a space."""
    text = prose(msgstr)
    problems = [f"write {v.write!r}, not {v.not_!r}" for v in (variants() if rules is None else rules)
                if v.lang == lang and v.not_ in text]
    if lang == "ja":
        touching = _TOUCHING.findall(text)
        if touching:
            problems.append(f"a space between half-width and Japanese text: {touching[:3]}")
    return problems


def catalog_glosses(messages: list[tuple[str, str]]) -> Counter:
    """How often each English term is glossed in one catalog's translations."""
    counts: Counter = Counter()
    for msgid, msgstr in messages:
        counts.update(g.strip().lower() for g in glosses(msgid, msgstr))
    return counts


def catalog_problems(messages: list[tuple[str, str]], name: str) -> list[str]:
    """The chapter-wide gloss rules: at most `MAX_GLOSSES`, each term glossed once."""
    counts = catalog_glosses(messages)
    problems = [f"{name}: gloss {term!r} used {n} times: only at the term's first use"
                for term, n in sorted(counts.items()) if n > 1]
    total = sum(counts.values())
    if total > MAX_GLOSSES:
        problems.append(f"{name}: {total} English glosses, at most {MAX_GLOSSES} per chapter: keep the ones "
                        f"a reader would look up ({', '.join(sorted(counts)[:8])}...)")
    return problems
