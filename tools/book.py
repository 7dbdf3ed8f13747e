"""Build the course's Jupyter Book site (``make book``) from ``notebooks/``, offline.

    .venv/bin/python tools/book.py toc [--lang ko]   # print the generated table of contents
    .venv/bin/python tools/book.py build [--fast 1] [--lang all|en|ko|ja]   # write _build/html

The table of contents is generated at every build from what is in ``notebooks/``: the landing
page ``index.md``, then every chapter ``NN_name.ipynb`` in order, titled with the notebook's first
heading, then the other pages (``*.md``, e.g. the instructors' notes). A new chapter needs no edit
here. Configuration (title, repository URL for the Colab buttons, execution) is in ``book.yml``;
``tools/book_sphinx.py`` keeps the pages free of external requests.

**Editions.** The English site is ``_build/html``; the Korean and Japanese ones are
``_build/html/ko`` and ``_build/html/ja``, built from the same notebooks with Sphinx's own i18n:
``language`` set, the prose replaced from ``locales/<lang>/LC_MESSAGES/<page>.po`` (see
``tools/translations.py``), code and outputs unchanged, a switcher on every page linking the same
page in the other editions. The chapters are executed once per build: the first edition runs them
through a fresh jupyter-cache (keyed on the code cells only, one folder per mode) and the others
take the outputs from it, so the three editions show the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from tools.catalogs import catalog_lookup, rendered_catalogs

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CONFIG = ROOT / "book.yml"
LANDING = "index"  # notebooks/index.md, the site's index.html
CHAPTER_GLOB = "[0-9][0-9]_*.ipynb"  # notebooks/NN_name.ipynb, as CONTRIBUTING.md names chapters
LOCALES = ROOT / "locales"


@dataclass(frozen=True)
class Edition:
    """One language edition of the site."""

    lang: str          # Sphinx `language` and the folder under locales/ and notebooks/
    name: str          # the language's name in itself, shown in the switcher
    title: str         # the book's title in that language
    captions: dict[str, str] = field(default_factory=dict)  # English toc caption -> translated

    @property
    def folder(self) -> str:
        """Where the edition sits in the site (and its notebooks under notebooks/): '' for English."""
        return "" if self.lang == "en" else self.lang


EDITIONS: dict[str, Edition] = {
    "en": Edition("en", "English", "Vision Transformers from First Principles"),
    "ko": Edition("ko", "한국어", "처음부터 배우는 Vision Transformer",
                  {"Chapters": "장", "More": "더 보기"}),
    "ja": Edition("ja", "日本語", "ゼロから学ぶ Vision Transformer",
                  {"Chapters": "章", "More": "その他"}),
}


def editions(spec: str) -> list[Edition]:
    """'all' or a comma-separated list of language codes -> those editions, English first."""
    langs = list(EDITIONS) if spec == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [lang for lang in langs if lang not in EDITIONS]
    if unknown or not langs:
        raise ValueError(f"lang must be 'all' or a comma-separated list of {sorted(EDITIONS)}, "
                         f"got {spec!r}")
    return [EDITIONS[lang] for lang in EDITIONS if lang in langs]


def chapters(source: Path = NOTEBOOKS) -> list[Path]:
    """The chapter notebooks ``NN_name.ipynb`` in `source`, in order."""
    if not source.is_dir():
        raise ValueError(f"source must be a folder of notebooks, got {str(source)!r}")
    return sorted(source.glob(CHAPTER_GLOB))


def first_heading(path: Path) -> str:
    """The text of the first Markdown heading in notebook or Markdown file `path`."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        texts = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                 for c in cells if c["cell_type"] == "markdown"]
    else:
        texts = [path.read_text(encoding="utf-8")]
    for text in texts:
        for line in text.splitlines():
            m = re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)
            if m:
                return m.group(1)
    raise ValueError(f"path {path.name!r} must start with a Markdown heading (its title), "
                     "found none")


def _title_translator(edition: Edition, locales: Path) -> Callable[[Path, str], str]:
    """(page, English text) -> the text in `edition`, from the page's catalog when it has one."""
    if edition.lang == "en":
        return lambda page, text: text
    def translate(page: Path, text: str) -> str:
        # Untranslated stays English, as Sphinx does with the page's own text (tests/
        # test_translations.py is what fails on an unfinished catalog, not the build).
        catalog = locales / edition.lang / "LC_MESSAGES" / f"{page.stem}.po"
        try:
            return catalog_lookup(catalog)(text) if catalog.is_file() else text
        except KeyError:
            return text
    return translate


def toc(source: Path = NOTEBOOKS, edition: Edition = EDITIONS["en"], locales: Path = LOCALES) -> dict:
    """The Jupyter Book table of contents (sphinx-external-toc's `jb-book` format), its titles and
    captions in `edition`'s language."""
    if not (source / f"{LANDING}.md").is_file():
        raise ValueError(f"source must hold the landing page {LANDING}.md, "
                         f"none in {str(source)!r}")
    title = _title_translator(edition, locales)
    caption = lambda text: edition.captions.get(text, text)  # noqa: E731
    parts = [{"caption": caption("Chapters"), "numbered": False,
              "chapters": [{"file": p.stem, "title": title(p, first_heading(p))}
                           for p in chapters(source)]}]
    pages = sorted(p for p in source.glob("*.md") if p.stem != LANDING)
    if pages:
        parts.append({"caption": caption("More"), "chapters": [{"file": p.stem} for p in pages]})
    return {"format": "jb-book", "root": LANDING, "parts": parts}


def write_toc(path: Path, source: Path = NOTEBOOKS, edition: Edition = EDITIONS["en"],
              locales: Path = LOCALES) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Generated by tools/book.py from notebooks/: do not edit.\n"
                    + yaml.safe_dump(toc(source, edition, locales), sort_keys=False,
                                     allow_unicode=True),
                    encoding="utf-8")
    return path


def read_config(config: Path = CONFIG) -> dict:
    """book.yml as a dict for a copy written elsewhere (under _build/): Sphinx finds local
    extensions relative to the config file, so their folders become absolute."""
    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    sphinx = cfg.setdefault("sphinx", {})
    sphinx["local_extensions"] = {name: str((config.parent / folder).resolve())
                                  for name, folder in sphinx.get("local_extensions", {}).items()}
    return cfg


def edition_config(edition: Edition, cache: Path, out: Path, config: Path = CONFIG,
                   locales: Path = LOCALES) -> Path:
    """book.yml for one edition: its language, title and catalogs, its notebooks for the launch
    buttons, the switcher's list of editions, and execution through the shared `cache`."""
    cfg = read_config(config)
    cfg["title"] = edition.title
    # Cached, not forced: build() empties the cache before the first edition, so every build
    # still executes every chapter once, and the other editions reuse that run.
    cfg["execute"]["execute_notebooks"] = "cache"
    cfg["execute"]["cache"] = str(cache)
    if edition.folder:
        cfg["repository"]["path_to_book"] = f"{cfg['repository']['path_to_book']}/{edition.folder}"
    sphinx = cfg.setdefault("sphinx", {}).setdefault("config", {})
    sphinx["language"] = edition.lang
    # The catalogs keep the chapters' {{ name }} placeholders; the pages Sphinx reads have the
    # numbers filled in, so it matches them against copies with the facts filled in too.
    sphinx["locale_dirs"] = [str(rendered_catalogs(out / "locales", edition.lang, locales))] if edition.folder else []
    # (the pages sit at the top level, so each page reads its own catalog <page>.po)
    sphinx["vitcourse_edition"] = edition.lang
    sphinx["vitcourse_editions"] = {e.lang: [e.folder, e.name] for e in EDITIONS.values()}
    path = out / "book" / f"_config.{edition.lang}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def build(fast: bool = True, source: Path = NOTEBOOKS, out: Path = ROOT / "_build",
          config: Path = CONFIG, lang: str = "en", locales: Path = LOCALES) -> Path:
    """Execute every page of `source` and write the site to ``out/html``; returns that folder.

    `lang` is 'all' or a comma-separated list of editions ('en', 'ko', 'ja'): English goes to
    ``out/html``, the others to ``out/html/<lang>``. Raises subprocess.CalledProcessError when a
    notebook fails (``raise_on_error`` in book.yml).
    """
    if out.name != "_build":
        raise ValueError(f"out must be a folder named _build (Jupyter Book's choice), got {out}")
    chosen = editions(lang)
    mode = "fast" if fast else "full"
    # A clean build: Sphinx re-reads (so myst-nb re-executes) only changed files, which would
    # keep full-mode outputs in a fast build, and the pages of a deleted chapter. The cache is
    # emptied too: it is keyed on the code cells, not on the package the code imports.
    cache = out / ".jupyter_cache" / mode
    html_dir = out / "html"
    # (a build of only ko or ja replaces that edition and leaves the others in html/)
    stale = [out / "editions", cache] + [html_dir / e.folder for e in chosen if e.folder]
    if any(not e.folder for e in chosen):
        stale += [html_dir, out / ".doctrees", out / "jupyter_execute"]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    env = dict(os.environ)
    env["VITCOURSE_FAST"] = "1" if fast else "0"
    # The kernel must draw with the inline backend: `make test` style MPLBACKEND=Agg would leave
    # the pages without figures.
    env.pop("MPLBACKEND", None)
    jb = Path(sys.executable).with_name("jupyter-book")
    start = time.monotonic()
    for edition in chosen:
        # Each edition builds in a folder of its own (Sphinx keeps one environment per build);
        # English's is `out` itself, so jupyter_execute/ and html/ stay where they always were.
        root = out.parent if not edition.folder else out / "editions" / edition.lang
        toc_path = write_toc(out / "book" / f"_toc.{edition.lang}.yml", source, edition, locales)
        cfg_path = edition_config(edition, cache, out, config, locales)
        cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(source),
               "--config", str(cfg_path), "--toc", str(toc_path), "--path-output", str(root)]
        subprocess.run(cmd, check=True, env=env, cwd=ROOT)
        if edition.folder:
            target = html_dir / edition.folder
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(root / "_build" / "html", target)
    print(f"book: built {', '.join(e.lang for e in chosen)} in {html_dir} in "
          f"{time.monotonic() - start:.0f} s ({mode} mode)")
    return html_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("toc", help="print the generated table of contents")
    t.add_argument("--lang", choices=sorted(EDITIONS), default="en")
    b = sub.add_parser("build", help="execute the chapters and build _build/html")
    b.add_argument("--fast", type=int, choices=[0, 1], default=1,
                   help="1: fast mode (VITCOURSE_FAST=1, the default); 0: full runs")
    b.add_argument("--lang", default="all",
                   help="'all' (the default) or a comma-separated list of en, ko, ja")
    args = parser.parse_args(argv)
    if args.command == "toc":
        print(yaml.safe_dump(toc(edition=EDITIONS[args.lang]), sort_keys=False,
                             allow_unicode=True), end="")
        return 0
    try:
        editions(args.lang)
    except ValueError as err:
        parser.error(str(err))
    try:
        build(fast=bool(args.fast), lang=args.lang)
    except subprocess.CalledProcessError as err:
        print(f"book: the build failed (exit {err.returncode}); see the log above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
