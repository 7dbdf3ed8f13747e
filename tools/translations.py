"""The Korean and Japanese catalogs of the course's prose (``make translations``), Sphinx's i18n way.

    .venv/bin/python tools/translations.py update   # English text -> locales/{ko,ja}/LC_MESSAGES/*.po
    .venv/bin/python tools/translations.py stats    # messages, translated, untranslated, fuzzy per catalog
    .venv/bin/python tools/translations.py check [CATALOG ...]   # every problem, one line each
    .venv/bin/python tools/translations.py todo CATALOG            # what needs a translator, as JSON
    .venv/bin/python tools/translations.py fill CATALOG FILE.json  # set {msgid: msgstr} translations
    .venv/bin/python tools/translations.py editions # catalogs -> notebooks/{ko,ja}/NN_name.ipynb
    .venv/bin/python tools/translations.py stale    # catalogs whose messages differ from the English
    .venv/bin/python tools/translations.py messages # the checks' messages -> vitcourse/locales/*.po, .mo

``update`` runs the book's own Sphinx configuration (book.yml, nothing executed) with the
``gettext`` builder into ``_build/gettext/*.pot``, one template per page (every chapter's markdown
cells, ``index.md``, ``instructors.md``), then ``sphinx-intl update`` merges them into the
catalogs: a new English message arrives untranslated, a changed one fuzzy (its old translation
kept as a hint), a removed one is dropped. Catalogs carry no source locations and no creation
date, so they change only when the English text does. The code cells are never in a catalog:
they stay one source for every edition.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from tools.book import CONFIG, NOTEBOOKS, read_config, write_toc
from tools import translation_style as style
from tools.catalogs import BADGE, catalog_lookup, read_catalog
from tools.chapters import (placeholders, read_facts, render_value, sources, substitute,
                            template_notebook)

ROOT = Path(__file__).resolve().parents[1]

LOCALES = ROOT / "locales"
LANGUAGES: tuple[str, ...] = ("ko", "ja")
POT_DIR = ROOT / "_build" / "gettext"


def gettext_config(out: Path) -> Path:
    """book.yml for the gettext builder: nothing executed (only markdown is extracted), no source
    locations or UUIDs in the templates (they would make every catalog differ per machine)."""
    config = read_config(CONFIG)
    config["execute"]["execute_notebooks"] = "off"
    sphinx = config["sphinx"]
    sphinx.setdefault("config", {}).update(project="vitcourse", gettext_location=False, gettext_uuid=False,
                                           gettext_last_translator="vitcourse", gettext_compact=True)
    path = out / "gettext_book.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def write_templates(folder: Path, pages: Path = NOTEBOOKS) -> Path:
    """The book's pages with their ``{{ name }}`` placeholders kept, in `folder`: every chapter
    built from ``chapters/`` without its facts, and the markdown pages (``index.md``, ...) as
    they are. The catalogs are extracted from these, so a new measurement changes no catalog."""
    import shutil

    import nbformat

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for source in sources():
        nbformat.write(template_notebook(source), str(folder / f"{source.stem}.ipynb"))
    for page in pages.glob("*.md"):
        shutil.copy(page, folder / page.name)
    return folder


def extract(pot_dir: Path = POT_DIR, source: Path | None = None) -> list[Path]:
    """Write one ``.pot`` template per page of the book into `pot_dir`; returns them. `source`
    is a folder of pages; by default the placeholder templates (`write_templates`)."""
    if pot_dir.name != "gettext" or pot_dir.parent.name != "_build":
        raise ValueError(f"pot_dir must be a folder _build/gettext (Jupyter Book's layout), got {pot_dir}")
    build = pot_dir.parent
    if source is None:
        source = write_templates(build / "templates")
    config = gettext_config(build / "gettext_config")
    toc = write_toc(build / "gettext_config" / "_toc.yml", source)
    jb = Path(sys.executable).with_name("jupyter-book")
    subprocess.run([str(jb) if jb.exists() else "jupyter-book", "build", str(source), "--config", str(config),
                    "--toc", str(toc), "--path-output", str(build.parent), "--builder", "custom",
                    "--custom-builder", "gettext", "--quiet"], check=True, cwd=ROOT)
    return sorted(pot_dir.glob("*.pot"))


def update(languages: tuple[str, ...] = LANGUAGES, locales: Path = LOCALES) -> list[Path]:
    """Extract the templates and merge them into `locales/<lang>/LC_MESSAGES/*.po`; returns the catalogs."""
    pots = extract()
    intl = Path(sys.executable).with_name("sphinx-intl")
    cmd = [str(intl) if intl.exists() else "sphinx-intl", "update", "-p", str(POT_DIR), "-d", str(locales),
           "--line-width", "-1"]
    for lang in languages:
        cmd += ["-l", lang]
    subprocess.run(cmd, check=True, cwd=ROOT)
    catalogs = [locales / lang / "LC_MESSAGES" / f"{pot.stem}.po" for lang in languages for pot in pots]
    for path in catalogs:
        strip_volatile_headers(path)
    return catalogs


HEADER_COMMENT = "# The course's prose in translation: see tools/translations.py and locales/GLOSSARY.md.\n"


def strip_volatile_headers(path: Path) -> None:
    """Drop the header lines that change at every extraction (creation date, generator version),
    the template's placeholder comments, and the template's fuzzy mark on the header entry."""
    text = path.read_text(encoding="utf-8")
    head, sep, body = text.partition('msgid ""\n')
    lines = [line for line in body.splitlines(keepends=True)
             if not line.startswith(('"POT-Creation-Date:', '"Generated-By:', '"PO-Revision-Date:'))]
    path.write_text(HEADER_COMMENT + sep + "".join(lines), encoding="utf-8")


@dataclass(frozen=True)
class CatalogStats:
    path: Path
    messages: int
    translated: int
    untranslated: int
    fuzzy: int
    glosses: int = 0  # English terms glossed in brackets (tools/translation_style.py)


def finished(catalog) -> list[tuple[str, str]]:
    """(msgid, msgstr) of a catalog's translated, not fuzzy messages."""
    return [(m.id, m.string) for m in catalog if m.id and m.string and not m.fuzzy]


def stats(path: Path) -> CatalogStats:
    """How much of a catalog is translated (babel's reader; the header entry is not a message),
    and how many English glosses its translations carry."""
    catalog = read_catalog(path)
    messages = [m for m in catalog if m.id]
    fuzzy = sum(1 for m in messages if m.fuzzy)
    untranslated = sum(1 for m in messages if not m.string)
    glosses = sum(style.catalog_glosses(finished(catalog)).values())
    return CatalogStats(path, len(messages), len(messages) - fuzzy - untranslated, untranslated, fuzzy, glosses)


_CODE = re.compile(r"``[^`]+``|`[^`]+`")
_MATH = re.compile(r"\$\$.+?\$\$|\$[^$]+\$", re.S)
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# A count with a word for its size is the same number in another language's words: "14 million"
# is "1,400만" (Korean counts in 10^4 and 10^8), "1,400 万" or "14 × 10⁶".
_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")
_SCALED = re.compile(r"(\d+(?:[.,]\d+)*)\s*(?:(thousand|million|billion)\b|(만(?!큼)|억|万|億)|×\s*10([⁰¹²³⁴⁵⁶⁷⁸⁹]+))")
_SCALE = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "만": 10**4, "万": 10**4, "억": 10**8, "億": 10**8}


def numbers_of(text: str) -> list[str]:
    """The numbers of `text` as written, except a scaled count ("2.5 billion", "25억",
    "2.5 × 10⁹"), which counts as its value ("2500000000")."""
    from decimal import Decimal

    def value(m: re.Match) -> str:
        scale = _SCALE[m[2] or m[3]] if (m[2] or m[3]) else 10 ** int(m[4].translate(_SUPERSCRIPT))
        return f" {int(Decimal(m[1].replace(',', '')) * scale)} "
    return _NUMBER.findall(_SCALED.sub(value, text))


# A translation is parsed again as markdown on its own: one that starts like a block ("2. ...",
# "- ...", "# ...", "> ...") would become a list, a heading or a quote, and Sphinx would drop it.
_BLOCK_START = re.compile(r"^(\d+)([.)])(\s)|^([-*+>#])(\s)")


def escape_block_start(msgstr: str) -> str:
    """"2. Title" -> "2\\. Title" (markdown's escape: it renders as "2. Title", in Jupyter too)."""
    return _BLOCK_START.sub(lambda m: f"{m[1]}\\{m[2]}{m[3]}" if m[1] else f"\\{m[4]}{m[5]}", msgstr)


def edition_badge(url: str, lang: str) -> str:
    """The Colab link of an edition's notebook: notebooks/NN.ipynb -> notebooks/<lang>/NN.ipynb."""
    return BADGE.sub(lambda m: f"{m.group(1)}{lang}/{m.group(2)}", url)


def message_problems(msgid: str, msgstr: str, lang: str) -> list[str]:
    """What a translation changed that must stay as it is: inline code, maths, link targets (an
    edition's Colab badge points at its own notebook), and the numbers of the English text."""
    problems = []
    if not msgstr:
        return ["untranslated"]
    if escape_block_start(msgstr) != msgstr:
        problems.append(f"starts like a markdown block: write {escape_block_start(msgstr)[:12]!r}...")
    source = _MATH.sub(" ", _CODE.sub(" ", msgid))
    target = _MATH.sub(" ", _CODE.sub(" ", msgstr))
    for name, pattern, a, b in (("inline code", _CODE, msgid, msgstr), ("maths", _MATH, _CODE.sub(" ", msgid), _CODE.sub(" ", msgstr))):
        if sorted(pattern.findall(a)) != sorted(pattern.findall(b)):
            missing = sorted(set(pattern.findall(a)) - set(pattern.findall(b)))
            problems.append(f"{name} differs (missing: {missing[:3]})")
    links = sorted(edition_badge(u, lang) for u in _LINK.findall(source))
    if links != sorted(_LINK.findall(target)):
        problems.append(f"link targets differ: expected {links}, got {sorted(_LINK.findall(target))}")
    numbers = numbers_of(_LINK.sub(" ", source))
    have = numbers_of(_LINK.sub(" ", target))
    lost = [n for n in set(numbers) if have.count(n) < numbers.count(n)]
    if lost:
        problems.append(f"numbers missing: {sorted(lost)}")
    if sorted(placeholders(msgid)) != sorted(placeholders(msgstr)):
        problems.append(f"placeholders differ: expected {sorted(placeholders(msgid))}, "
                        f"got {sorted(placeholders(msgstr))}")
    want, got = markup(msgid), markup(msgstr)
    if want != got:
        changed = sorted(k for k in want.keys() | got.keys() if want[k] != got[k])
        problems.append("markup differs after rendering: " + ", ".join(
            f"{k} {want[k]} -> {got[k]}" for k in changed)
            + (" (a closing ** or * after a full-width bracket and before a letter does not close: "
               "move the marker inside the bracket or drop the bracket)" if any("em" in k or "strong" in k
                                                                                  for k in changed) else ""))
    return problems


_MARKUP = ("strong_open", "em_open", "link_open", "image")  # (code spans and maths: checked above)


def markup(text: str) -> dict[str, int]:
    """How many emphasis, links and images `text` renders to, as markdown-it (MyST's
    parser) reads it, and how many ``*`` are left as plain text (an emphasis marker that did not
    pair up after rendering)."""
    from collections import Counter

    counts: Counter = Counter()
    for token in _markdown_parser().parseInline(text):
        for child in token.children or []:
            if child.type in _MARKUP:
                counts[child.type] += 1
            elif child.type == "text" and "*" in child.content:
                counts["unpaired *"] += child.content.count("*")
    return counts


def check(path: Path) -> list[str]:
    """Every problem of a catalog, one line each: untranslated, fuzzy, a changed code / maths /
    link / number (see `message_problems`), and what breaks the glossary's conventions (glosses,
    one word each: tools/translation_style.py). The language is the catalog's folder (ko, ja)."""
    lang = path.parents[1].name
    catalog = read_catalog(path)
    rules = style.variants()
    out = []
    for m in catalog:
        if m.id:
            label = m.id[:60].replace("\n", " ")
            out += [f"{path.name}: {p}: {label!r}" for p in problems_of(m, lang, rules)]
    return out + style.catalog_problems(finished(catalog), path.name)


def problems_of(message, lang: str, rules: list[style.Variant]) -> list[str]:
    """What is wrong with one message of a chapter's catalog (`check` lists them, `todo` groups
    them by message). A fuzzy one is not used (the English shows) until it is translated again:
    nothing else is checked."""
    if message.fuzzy:
        return ["fuzzy"]
    problems = message_problems(message.id, message.string, lang)
    if message.string:
        problems += style.gloss_problems(message.id, message.string) + style.term_problems(message.string, lang, rules)
    return problems


def todo(path: Path) -> dict[str, dict[str, Any]]:
    """The messages of a catalog that need a translator, for `fill`: {msgid: {"msgstr": the
    current (or, when fuzzy, the old) translation, "problems": [...]}} for every untranslated,
    fuzzy or problematic message. The chapter-wide gloss problems are under the key ""."""
    lang = path.parents[1].name
    catalog = read_catalog(path)
    rules = style.variants()
    out: dict[str, dict[str, Any]] = {}
    checks_catalog = path.name == "vitcourse.po"  # the checks' plain-text messages: only their fields matter
    for m in catalog:
        problems = (field_problems(m) if checks_catalog else problems_of(m, lang, rules)) if m.id else []
        if problems:
            out[m.id] = {"msgstr": m.string, "problems": problems}
    chapter = [] if checks_catalog else style.catalog_problems(finished(catalog), path.name)
    if chapter:
        out[""] = {"msgstr": "", "problems": chapter}
    return out


def fill(path: Path, translations: dict[str, str]) -> int:
    """Set the translation of each msgid in `translations` (a dict, e.g. from a JSON file) in the
    catalog at `path`, clearing its fuzzy mark; returns how many were set. An unknown msgid is an
    error: it means the English text moved on (run `update` first)."""
    from babel.messages.pofile import write_po

    catalog = read_catalog(path)
    unknown = [k for k in translations if k not in catalog]
    if unknown:
        raise ValueError(f"translations: {len(unknown)} msgids are not in {path.name}, e.g. {unknown[0][:60]!r}")
    for msgid, msgstr in translations.items():
        message = catalog[msgid]
        # (the chapters' messages are parsed as markdown by Sphinx, the checks' are plain text)
        message.string = msgstr if path.name == "vitcourse.po" else escape_block_start(msgstr)
        message.flags.discard("fuzzy")
        message.previous_id = []
    with open(path, "wb") as f:
        write_po(f, catalog, width=-1)
    strip_volatile_headers(path)
    return len(translations)


def _markdown_parser():
    """markdown-it with the extensions book.yml enables (MyST's parser: what Sphinx cut the
    messages from), so each inline token below is one message of the catalog."""
    from markdown_it import MarkdownIt
    from mdit_py_plugins.amsmath import amsmath_plugin
    from mdit_py_plugins.colon_fence import colon_fence_plugin
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    return (MarkdownIt("commonmark").enable("table").use(dollarmath_plugin, double_inline=True)
            .use(amsmath_plugin).use(colon_fence_plugin))


def translate_markdown(source: str, translate: Callable[[str], str]) -> str:
    """`source` with the text of every paragraph, heading, list item and table cell replaced by
    `translate(message)`, the message being the text as Sphinx extracts it (its lines joined by
    spaces). Block markers (``#``, ``-``, ``1.``, ``>``, ``|``), maths blocks and code stay."""
    lines = source.split("\n")
    tokens = _markdown_parser().parse(source)
    edits: list[tuple[int, int, str | None, str, str]] = []  # (first, last, cell text or None, prefix, new)
    in_table = False
    for token in tokens:
        if token.type == "table_open":
            in_table = True
        elif token.type == "table_close":
            in_table = False
        if token.type != "inline" or token.map is None or not token.content.strip():
            continue
        message = token.content.replace("\n", " ").strip()
        new = translate(message)
        first, last = token.map
        if in_table:  # one cell of a row: replace its text within that line
            edits.append((first, first + 1, token.content.strip(), "", new))
            continue
        head = token.content.split("\n")[0]
        at = lines[first].find(head)
        if at < 0:
            raise ValueError(f"source: cannot place the message {message[:50]!r} in its line {lines[first]!r}")
        suffix = lines[first][at + len(head):] if last - first == 1 else ""  # e.g. a heading's closing #s
        edits.append((first, last, None, lines[first][:at], new + suffix))
    cursor: dict[int, int] = {}  # a table row's cells are replaced left to right, each after the last
    for first, _, cell, _, new in (e for e in edits if e[2] is not None):
        row, at = lines[first], lines[first].find(cell, cursor.get(first, 0))
        if at < 0:
            raise ValueError(f"source: cannot place the table cell {cell[:50]!r} in its row {row!r}")
        lines[first] = row[:at] + new + row[at + len(cell):]
        cursor[first] = at + len(new)
    for first, last, _, prefix, new in sorted((e for e in edits if e[2] is None), key=lambda e: -e[0]):
        lines[first:last] = [prefix + new]  # bottom up: the line numbers above stay right
    return "\n".join(lines)


SETUP_TAG = "colab-setup"  # tools/nbbuild.py's Colab set-up cell
SETUP_CD = re.compile(r"^(\s*%cd \S+/notebooks)$", re.M)


def edition_notebook(notebook, lang: str, translate: Callable[[str], str],
                     facts: Mapping[str, Any] | None = None, name: str = "chapter"):
    """The `lang` edition of an English chapter `notebook` (its placeholder template, see
    `write_templates`): every markdown cell translated, then its ``{{ name }}`` placeholders filled
    from `facts`; every code cell (and the cell ids, so that grading and nbval address the same
    cells) as it is, but for the Colab set-up cell's last line, which enters notebooks/<lang>/
    (where the exercise checks read the language from, as they do locally, where Jupyter starts
    the kernel in the notebook's folder)."""
    for i, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown":
            # the Colab badge points at the edition, translated or not (an untranslated title
            # cell stays English, but still opens notebooks/<lang>/)
            cell.source = edition_badge(translate_markdown(cell.source, translate), lang)
            if facts is not None:
                cell.source = substitute(cell.source, facts, f"{lang}/{name}, cell {i}")
        elif SETUP_TAG in cell.get("metadata", {}).get("tags", []):
            cell.source, n = SETUP_CD.subn(rf"\1/{lang}", cell.source)
            if n != 1:
                raise ValueError(f"{name}: the Colab set-up cell must end in `%cd .../notebooks`, "
                                 f"got {cell.source.splitlines()[-1]!r}")
    notebook.metadata["language"] = lang
    return notebook


def editions(languages: tuple[str, ...] = LANGUAGES, source: Path = NOTEBOOKS,
             locales: Path = LOCALES) -> dict[Path, str]:
    """{notebooks/<lang>/NN_name.ipynb: its text} for every chapter and language, generated from
    the chapter's source, its catalog and its facts (deterministic: the same inputs give the same
    bytes). A message not yet translated stays in English; `check` lists those."""
    import nbformat

    out = {}
    for lang in languages:
        for chapter in sources():
            catalog = locales / lang / "LC_MESSAGES" / f"{chapter.stem}.po"
            if not catalog.is_file():
                raise FileNotFoundError(f"{catalog}: no catalog for {chapter.name}: run `make translations`")
            notebook = edition_notebook(template_notebook(chapter), lang, catalog_lookup(catalog, fallback=True),
                                        read_facts(chapter.stem), chapter.name)
            out[source / lang / f"{chapter.stem}.ipynb"] = nbformat.writes(notebook) + "\n"
    return out


def messages_of(markdown: str) -> list[str]:
    """The catalog messages of one markdown cell, in order (as `translate_markdown` cuts them)."""
    found: list[str] = []
    translate_markdown(markdown, lambda message: found.append(message) or message)
    return found


def _number_pattern(value: str) -> re.Pattern:
    """`value` as a whole number or word: 3 must not match inside 30, 0.5 or 3.1. The borders
    are ASCII: in Korean and Japanese a number touches the next word ("0.4포인트")."""
    return re.compile(rf"(?<![0-9A-Za-z_.,]){re.escape(value)}(?![0-9A-Za-z_]|[.,]\d)")


def with_placeholders(msgstr: str, template: str, facts: Mapping[str, Any]) -> str | None:
    """A translation made before its message quoted facts by name, rewritten to the placeholders
    of the new message `template`: each fact's value in `msgstr` becomes its ``{{ name }}``.
    None when that is not certain (two facts read alike, or a value appears a different number
    of times): the message is then translated again."""
    names = list(dict.fromkeys(placeholders(template)))
    values = {name: render_value(facts[name]) for name in names}
    if len(set(values.values())) < len(values):
        return None
    new = msgstr
    for name, value in sorted(values.items(), key=lambda kv: -len(kv[1])):
        new = _number_pattern(value).sub(lambda m, n=name: "{{ " + n + " }}", new)
    if sorted(placeholders(new)) != sorted(placeholders(template)) or substitute(new, facts) != msgstr:
        return None
    return new


def adopt_placeholders(stem: str, languages: tuple[str, ...] = LANGUAGES, locales: Path = LOCALES
                       ) -> dict[str, tuple[int, int]]:
    """After numbers of chapter `stem`'s prose became ``{{ name }}`` placeholders: carry each
    catalog's translations over to the new messages, with the placeholders put into the
    translations (`with_placeholders`); {lang: (carried over, left to translate again)}."""
    from babel.messages.pofile import write_po

    source = ROOT / "chapters" / f"{stem}.md"
    facts = read_facts(stem)
    # (rendered, template) in the chapter's order; several templates may read alike once filled
    # in (three table cells that all read "2"), so this is a list, not a dict keyed on the text.
    pairs: list[tuple[str, str]] = []
    for cell in template_notebook(source).cells:
        if cell.cell_type == "markdown":
            pairs += [(substitute(m, facts), m) for m in messages_of(cell.source) if placeholders(m)]
    templates = {template for _, template in pairs}
    result = {}
    for lang in languages:
        path = locales / lang / "LC_MESSAGES" / f"{stem}.po"
        catalog = read_catalog(path)
        carried = lost = 0
        used = set()
        for rendered, template in pairs:
            if rendered not in catalog or template in catalog:
                continue
            old = catalog[rendered]
            string = with_placeholders(old.string, template, facts) if old.string and not old.fuzzy else None
            catalog.add(template, string or "", flags=set() if string else set(old.flags) - {"fuzzy"})
            used.add(rendered)
            carried, lost = (carried + 1, lost) if string else (carried, lost + 1)
        for rendered in used - templates:  # the old messages, now replaced by their templates
            del catalog[rendered]
        with open(path, "wb") as f:
            write_po(f, catalog, width=-1)
        strip_volatile_headers(path)
        result[lang] = (carried, lost)
    return result


def write_editions(languages: tuple[str, ...] = LANGUAGES, source: Path = NOTEBOOKS,
                   locales: Path = LOCALES) -> list[Path]:
    """Write notebooks/<lang>/NN_name.ipynb for every chapter (and remove the editions of chapters
    that no longer exist); returns the notebooks written."""
    generated = editions(languages, source, locales)
    for lang in languages:
        for old in (source / lang).glob("*.ipynb"):
            if old not in generated:
                old.unlink()
    for path, text in generated.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(generated)


def stale(languages: tuple[str, ...] = LANGUAGES, locales: Path = LOCALES,
          pot_dir: Path = POT_DIR) -> list[str]:
    """The catalogs whose messages are not the English text of today (a chapter changed and
    `make translations` was not run), one line each; [] when all are current."""
    problems = []
    for pot in extract(pot_dir):
        english = {m.id for m in read_catalog(pot) if m.id}
        for lang in languages:
            path = locales / lang / "LC_MESSAGES" / f"{pot.stem}.po"
            if not path.is_file():
                problems.append(f"{lang}/{path.name}: missing")
                continue
            have = {m.id for m in read_catalog(path) if m.id}  # (obsolete ones are not iterated)
            if have != english:
                new, gone = sorted(english - have), sorted(have - english)
                problems.append(f"{lang}/{path.name}: {len(new)} new English messages "
                                f"{[m[:40] for m in new[:2]]}, {len(gone)} no longer in the chapter")
    return problems


# -- the exercise checks' messages (vitcourse.i18n) ---------------------------------------------

PACKAGE_LOCALES = ROOT / "vitcourse" / "locales"
MESSAGE_SOURCES = (ROOT / "vitcourse" / "checks", ROOT / "vitcourse" / "i18n.py")
# `_("...")`, and the title (2nd argument) of `@exercise("01.2", "title", ...)`.
MESSAGE_KEYWORDS = {"_": None, "exercise": (2,)}
_FIELD = re.compile(r"\{\{|\}\}|\{[^{}]*\}")


def message_templates() -> list[str]:
    """Every student-visible message template of the checks, in source order, each once."""
    from babel.messages.extract import extract_from_file

    files = [f for src in MESSAGE_SOURCES for f in (sorted(src.glob("*.py")) if src.is_dir() else [src])]
    found: list[str] = []
    for path in files:
        found += [m[1] for m in extract_from_file("python", str(path), keywords=MESSAGE_KEYWORDS)]
        if path.name == "i18n.py":  # the confirmation line and the stubs' words, module constants
            from vitcourse.i18n import MODULE_MESSAGES
            found += MODULE_MESSAGES
    return list(dict.fromkeys(found))


def message_catalog_path(lang: str, locales: Path = PACKAGE_LOCALES) -> Path:
    return locales / lang / "LC_MESSAGES" / "vitcourse.po"


def update_messages(languages: tuple[str, ...] = LANGUAGES, locales: Path = PACKAGE_LOCALES) -> list[Path]:
    """Merge today's templates into vitcourse/locales/<lang>/LC_MESSAGES/vitcourse.po (new ones
    untranslated, changed ones fuzzy, removed ones dropped), and compile each to its .mo."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    template = Catalog(project="vitcourse", fuzzy=False)
    for message in message_templates():
        template.add(message)
    written = []
    for lang in languages:
        path = message_catalog_path(lang, locales)
        catalog = read_catalog(path) if path.is_file() else Catalog(locale=lang, project="vitcourse")
        catalog.update(template)
        catalog.obsolete.clear()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            write_po(f, catalog, width=-1, no_location=True, omit_header=False)
        strip_volatile_headers(path)
        compile_messages(path)
        written.append(path)
    return written


def compiled(path: Path) -> bytes:
    """The .mo bytes of catalog `path` (fuzzy entries left out, as msgfmt does)."""
    import io

    from babel.messages.mofile import write_mo

    import datetime

    catalog = read_catalog(path)
    # The catalogs carry no dates (strip_volatile_headers): babel would put "now" into the .mo's
    # header, and the same catalog would compile to other bytes every minute.
    catalog.creation_date = catalog.revision_date = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    out = io.BytesIO()
    write_mo(out, catalog, use_fuzzy=False)
    return out.getvalue()


def compile_messages(path: Path) -> Path:
    mo = path.with_suffix(".mo")
    mo.write_bytes(compiled(path))
    return mo


def fields(template: str) -> list[str]:
    """The replacement fields of a str.format template ({what}, {got!r}, {x:.3f}), sorted."""
    return sorted(f for f in _FIELD.findall(template) if f not in ("{{", "}}"))


def check_messages(path: Path) -> list[str]:
    """Problems of a checks' catalog: untranslated, fuzzy, or fields changed (which would make
    `.format` raise or drop a value)."""
    return [f"{path.parent.parent.name}/vitcourse.po: {m.id[:50]!r}: {p}"
            for m in read_catalog(path) if m.id for p in field_problems(m)]


def field_problems(message) -> list[str]:
    """What is wrong with one message of a checks' catalog: untranslated, fuzzy, or its fields."""
    if not message.string:
        return ["untranslated"]
    if message.fuzzy:
        return ["fuzzy"]
    if fields(message.string) != fields(message.id):
        return [f"fields {fields(message.string)} instead of {fields(message.id)}"]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("update", help="extract the English text and merge it into the catalogs")
    sub.add_parser("stats", help="print each catalog's counts")
    c = sub.add_parser("check", help="list every problem of the given catalogs (all by default)")
    c.add_argument("catalogs", nargs="*", type=Path)
    t = sub.add_parser("todo", help="print the messages of a catalog that need a translator, as JSON")
    t.add_argument("catalog", type=Path)
    f = sub.add_parser("fill", help="set translations from a JSON file {msgid: msgstr} into a catalog")
    f.add_argument("catalog", type=Path)
    f.add_argument("json", type=Path)
    sub.add_parser("editions", help="write notebooks/<lang>/ from the English chapters and the catalogs")
    sub.add_parser("stale", help="list the catalogs whose messages differ from the English text")
    a = sub.add_parser("adopt", help="carry translations over to a chapter's new {{ name }} placeholders")
    a.add_argument("chapter", help="the chapter's name, e.g. 11_token_mixers")
    sub.add_parser("messages", help="extract the exercise checks' messages into vitcourse/locales and compile them")
    args = parser.parse_args(argv)
    if args.command == "messages":
        for path in update_messages():
            s = stats(path)
            print(f"{path.relative_to(ROOT)}: {s.messages} messages, {s.translated} translated, "
                  f"{s.untranslated} untranslated, {s.fuzzy} fuzzy")
        problems = [p for lang in LANGUAGES for p in check_messages(message_catalog_path(lang))]
        print(f"{len(problems)} problems" + (": translate them (fill works on these catalogs too), "
                                             "then run `messages` again" if problems else ""))
        return 0
    if args.command == "editions":
        try:
            written = write_editions()
        except (KeyError, FileNotFoundError) as err:
            print(f"translations: {err.args[0]}", file=sys.stderr)
            return 1
        print(f"translations: {len(written)} edition notebooks written in "
              f"{', '.join(f'notebooks/{lang}/' for lang in LANGUAGES)}")
        return 0
    if args.command == "adopt":
        for lang, (carried, lost) in adopt_placeholders(args.chapter).items():
            print(f"{lang}/{args.chapter}.po: {carried} translations carried over to placeholders, "
                  f"{lost} to translate again")
        return 0
    if args.command == "stale":
        problems = stale()
        print("\n".join(problems) or "every catalog holds today's English text")
        return 1 if problems else 0
    if args.command == "fill":
        import json
        n = fill(args.catalog, json.loads(args.json.read_text(encoding="utf-8")))
        print(f"{args.catalog}: {n} translations set")
        if args.catalog.name == "vitcourse.po":  # the checks' messages: compiled for the package
            compile_messages(args.catalog)
        problems = check_messages(args.catalog) if args.catalog.name == "vitcourse.po" else check(args.catalog)
        print(f"{len(problems)} problems left" + (": run `check` to list them" if problems else ""))
        return 0
    if args.command == "todo":
        import json
        print(json.dumps(todo(args.catalog), ensure_ascii=False, indent=1))
        return 0
    if args.command == "check":
        problems = [p for path in (args.catalogs or sorted(LOCALES.glob("*/LC_MESSAGES/*.po"))) for p in check(path)]
        print("\n".join(problems) or "no problems")
        return 1 if problems else 0
    if args.command == "update":
        catalogs = update()
        print(f"translations: {len(catalogs)} catalogs updated in {LOCALES.relative_to(ROOT)}/")
    for path in sorted(LOCALES.glob("*/LC_MESSAGES/*.po")):
        s = stats(path)
        print(f"{str(path.relative_to(LOCALES)):40s} {s.messages:4d} messages, {s.translated:4d} translated, "
              f"{s.untranslated:4d} untranslated, {s.fuzzy:3d} fuzzy, {s.glosses:3d} glosses")
    return 0


if __name__ == "__main__":
    sys.exit(main())
