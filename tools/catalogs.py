"""Reading the translation catalogs (``locales/<lang>/LC_MESSAGES/<page>.po``), for the book and
the editions alike (tools/book.py and tools/translations.py both import this; it imports neither).

A catalog's messages keep the chapter's ``{{ name }}`` placeholders (they are extracted from the
chapter sources, tools/translations.py): the numbers are filled in after translating, from the
chapter's facts, so a new measurement changes no catalog.
"""
from __future__ import annotations

import re

from pathlib import Path
from typing import Callable

from tools.chapters import read_facts, substitute

ROOT = Path(__file__).resolve().parents[1]
LOCALES = ROOT / "locales"


def read_catalog(path: Path):
    """A catalog as babel reads it (the reader Sphinx and sphinx-intl use)."""
    from babel.messages.pofile import read_po

    with open(path, "rb") as f:
        return read_po(f)


def translations(path: Path) -> dict[str, str]:
    """{msgid: msgstr} of the finished messages of a catalog (not empty, not fuzzy)."""
    return {m.id: m.string for m in read_catalog(path) if m.id and m.string and not m.fuzzy}


def catalog_lookup(path: Path, fallback: bool = False) -> Callable[[str], str]:
    """A function msgid -> msgstr of a catalog. A message it lacks, or has untranslated or fuzzy,
    is returned in English with `fallback` (an edition shows the English sentence until it is
    translated), and is an error without it."""
    strings = translations(path) if path.is_file() else {}

    def translate(message: str) -> str:
        if message in strings:
            return strings[message]
        if fallback:
            return message
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        raise KeyError(f"{where}: no translation of {message[:70]!r}: translate it there "
                       "(`tools/translations.py check` lists every such message), then run "
                       "`make translations` again")
    return translate


# the Colab link of a chapter; tools/translations.py rewrites it for the editions with the same pattern
BADGE = re.compile(r"(colab\.research\.google\.com/github/[^)]*/blob/main/notebooks/)([^/)]+\.ipynb)")


def rendered_catalogs(out: Path, lang: str, locales: Path = LOCALES) -> Path:
    """`lang`'s catalogs with the facts filled into both sides of every message, in
    ``out/<lang>/LC_MESSAGES/``: what Sphinx matches against a built chapter (whose numbers are
    filled in) when it builds an edition of the book. Returns `out` (Sphinx's locale_dirs)."""
    from babel.messages.pofile import write_po

    target = out / lang / "LC_MESSAGES"
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted((locales / lang / "LC_MESSAGES").glob("*.po")):
        catalog = read_catalog(path)
        facts = read_facts(path.stem)
        for message in list(catalog):
            if not message.id or not isinstance(message.id, str):
                continue
            where = f"{lang}/{path.name}"
            new_id = substitute(message.id, facts, where)
            if new_id != message.id:
                # a fuzzy translation is shown in English anyway, and may still name a fact the
                # chapter no longer has: it is left out rather than filled in
                string = substitute(message.string, facts, where) if message.string and not message.fuzzy else ""
                flags, del_id = set(message.flags), message.id
                del catalog[del_id]
                catalog.add(new_id, string, flags=flags)
        for message in catalog:  # an untranslated badge still opens the edition's own notebook
            if isinstance(message.id, str) and (not message.string or message.fuzzy) and BADGE.search(message.id):
                message.string = BADGE.sub(lambda m: f"{m.group(1)}{lang}/{m.group(2)}", message.id)
                message.flags.discard("fuzzy")
        with open(target / path.name, "wb") as f:
            write_po(f, catalog, width=-1)
    return out
