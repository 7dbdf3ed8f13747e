"""The Korean and Japanese catalogs of the course's prose (``make translations``), Sphinx's i18n way.

    .venv/bin/python tools/translations.py update   # English text -> locales/{ko,ja}/LC_MESSAGES/*.po
    .venv/bin/python tools/translations.py stats    # messages, translated, untranslated, fuzzy per catalog
    .venv/bin/python tools/translations.py check [CATALOG ...]   # every problem, one line each
    .venv/bin/python tools/translations.py fill CATALOG FILE.json  # set {msgid: msgstr} translations

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
from typing import Callable

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.book import CONFIG, NOTEBOOKS, write_toc  # noqa: E402

LOCALES = ROOT / "locales"
LANGUAGES: tuple[str, ...] = ("ko", "ja")
POT_DIR = ROOT / "_build" / "gettext"


def gettext_config(out: Path) -> Path:
    """book.yml for the gettext builder: nothing executed (only markdown is extracted), no source
    locations or UUIDs in the templates (they would make every catalog differ per machine)."""
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    config["execute"]["execute_notebooks"] = "off"
    sphinx = config.setdefault("sphinx", {})
    # local extensions are found relative to the config file, which is written elsewhere here
    sphinx["local_extensions"] = {name: str((CONFIG.parent / folder).resolve())
                                  for name, folder in sphinx.get("local_extensions", {}).items()}
    sphinx.setdefault("config", {}).update(project="vitcourse", gettext_location=False, gettext_uuid=False,
                                           gettext_last_translator="vitcourse", gettext_compact=True)
    path = out / "gettext_book.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def extract(pot_dir: Path = POT_DIR, source: Path = NOTEBOOKS) -> list[Path]:
    """Write one ``.pot`` template per page of the book into `pot_dir`; returns them."""
    if pot_dir.name != "gettext" or pot_dir.parent.name != "_build":
        raise ValueError(f"pot_dir must be a folder _build/gettext (Jupyter Book's layout), got {pot_dir}")
    build = pot_dir.parent
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


def read_catalog(path: Path):
    """A catalog as babel reads it (the reader Sphinx and sphinx-intl use)."""
    from babel.messages.pofile import read_po

    with open(path, "rb") as f:
        return read_po(f)


@dataclass(frozen=True)
class CatalogStats:
    path: Path
    messages: int
    translated: int
    untranslated: int
    fuzzy: int


def stats(path: Path) -> CatalogStats:
    """How much of a catalog is translated (babel's reader; the header entry is not a message)."""
    catalog = read_catalog(path)
    messages = [m for m in catalog if m.id]
    fuzzy = sum(1 for m in messages if m.fuzzy)
    untranslated = sum(1 for m in messages if not m.string)
    return CatalogStats(path, len(messages), len(messages) - fuzzy - untranslated, untranslated, fuzzy)


_CODE = re.compile(r"``[^`]+``|`[^`]+`")
_MATH = re.compile(r"\$\$.+?\$\$|\$[^$]+\$", re.S)
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
BADGE = re.compile(r"(colab\.research\.google\.com/github/[^)]*/blob/main/notebooks/)([^/)]+\.ipynb)")


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
    numbers = _NUMBER.findall(_LINK.sub(" ", source))
    have = _NUMBER.findall(_LINK.sub(" ", target))
    lost = [n for n in set(numbers) if have.count(n) < numbers.count(n)]
    if lost:
        problems.append(f"numbers missing: {sorted(lost)}")
    return problems


def check(path: Path) -> list[str]:
    """Every problem of a catalog, one line each: untranslated, fuzzy, or a changed code / maths /
    link / number (see `message_problems`). The language is the catalog's folder (ko, ja)."""
    lang = path.parents[1].name
    catalog = read_catalog(path)
    out = []
    for m in catalog:
        if not m.id:
            continue
        label = m.id[:60].replace("\n", " ")
        if m.fuzzy:
            out.append(f"{path.name}: fuzzy: {label!r}")
        out += [f"{path.name}: {p}: {label!r}" for p in message_problems(m.id, m.string, lang)]
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
        message.string = escape_block_start(msgstr)
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


def edition_notebook(path: Path, lang: str, translate: Callable[[str], str]):
    """The `lang` edition of an English chapter: every markdown cell translated, every code cell
    (and the cell ids, so that grading and nbval address the same cells) as it is."""
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = translate_markdown(cell.source, translate)
    notebook.metadata["language"] = lang
    return notebook


def catalog_lookup(path: Path) -> Callable[[str], str]:
    """A function msgid -> msgstr of a catalog; a message it lacks or has untranslated is an error
    (the chapter changed since `update`, or the catalog is not finished)."""
    strings = {m.id: m.string for m in read_catalog(path) if m.id and m.string and not m.fuzzy}

    def translate(message: str) -> str:
        if message not in strings:
            raise KeyError(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: no translation of "
                           f"{message[:70]!r}: run `make translations` and translate it")
        return strings[message]
    return translate


def write_editions(languages: tuple[str, ...] = LANGUAGES, source: Path = NOTEBOOKS,
                   locales: Path = LOCALES) -> list[Path]:
    """notebooks/<lang>/NN_name.ipynb for every chapter whose catalog exists; returns them."""
    import nbformat

    from tools.book import chapters

    written = []
    for lang in languages:
        for chapter in chapters(source):
            catalog = locales / lang / "LC_MESSAGES" / f"{chapter.stem}.po"
            notebook = edition_notebook(chapter, lang, catalog_lookup(catalog))
            out = source / lang / chapter.name
            out.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, str(out))
            written.append(out)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("update", help="extract the English text and merge it into the catalogs")
    sub.add_parser("stats", help="print each catalog's counts")
    c = sub.add_parser("check", help="list every problem of the given catalogs (all by default)")
    c.add_argument("catalogs", nargs="*", type=Path)
    f = sub.add_parser("fill", help="set translations from a JSON file {msgid: msgstr} into a catalog")
    f.add_argument("catalog", type=Path)
    f.add_argument("json", type=Path)
    args = parser.parse_args(argv)
    if args.command == "fill":
        import json
        n = fill(args.catalog, json.loads(args.json.read_text(encoding="utf-8")))
        print(f"{args.catalog}: {n} translations set")
        problems = check(args.catalog)
        print(f"{len(problems)} problems left" + (": run `check` to list them" if problems else ""))
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
              f"{s.untranslated:4d} untranslated, {s.fuzzy:3d} fuzzy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
