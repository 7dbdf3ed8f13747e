"""Sphinx extension for the course book: keep every page self-contained (no external request).

Loaded by Jupyter Book through ``book.yml`` (``sphinx.local_extensions``). It

- serves the vendored MathJax / RequireJS / ipywidgets embedder: ``book/extra/`` is copied to the
  site's root (``html_extra_path``), where ``mathjax_path`` and ``nb_ipywidgets_js`` in
  ``book.yml`` point; they stay out of ``_static`` because Jupyter Book adds every JS/CSS file
  there to every page;
- replaces remote images that we have a local copy of (the Colab badge in each chapter's title
  cell) by that copy, at build time: the notebooks keep the public URL, which GitHub and Colab
  show as usual;
- leaves out the Colab set-up cell (tag ``colab-setup``) from the pages: it does nothing outside
  Colab, and the Colab button opens the notebook with it;
- puts the language switcher at the top of every page: the same page in each edition
  (``vitcourse_editions``, set per edition by tools/book.py; absent, no switcher).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.transforms import SphinxTransform

BOOK = Path(__file__).resolve().parents[1] / "book"
EXTRA = BOOK / "extra"

# Remote image URL -> local file that replaces it in the site.
LOCAL_IMAGES: dict[str, Path] = {
    "https://colab.research.google.com/assets/colab-badge.svg": BOOK / "colab-badge.svg",
}


class LocalImages(SphinxTransform):
    """Point images with a known remote URL at the local copy (before images are collected)."""

    default_priority = 400

    def apply(self, **kwargs) -> None:
        for image in self.document.findall(nodes.image):
            local = LOCAL_IMAGES.get(image.get("uri", ""))
            if local is None:
                continue
            # Sphinx reads a leading "/" as relative to the source folder; the file may sit
            # outside it, hence the relative path with "..".
            rel = os.path.relpath(local, self.env.srcdir)
            image["uri"] = "/" + Path(rel).as_posix()
            image["candidates"] = {"*": image["uri"]}


SETUP_TAG = "colab-setup"


def _remove_setup_cell(app: Sphinx, docname: str, source: list[str]) -> None:
    """Tag the Colab set-up cell ``remove-cell`` (myst-nb then leaves it out of the page)."""
    if not app.env.doc2path(docname).endswith(".ipynb") or SETUP_TAG not in source[0]:
        return
    nb = json.loads(source[0])
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if SETUP_TAG in tags and "remove-cell" not in tags:
            cell["metadata"]["tags"] = [*tags, "remove-cell"]
    source[0] = json.dumps(nb)


SWITCHER_CLASS = "vitcourse-editions"


def edition_href(pagename: str, here: str, there: str) -> str:
    """Relative URL from page `pagename` of the edition in site folder `here` ('' for the site's
    root) to the same page of the edition in folder `there`."""
    up = "../" * (pagename.count("/") + (1 if here else 0))
    return f"{up}{there + '/' if there else ''}{pagename}.html"


def switcher_html(pagename: str, current: str, editions: dict[str, list[str]]) -> str:
    """The switcher's HTML: one link per edition, the current one marked (no link)."""
    here = editions[current][0]
    items = []
    for lang, (folder, name) in editions.items():
        if lang == current:
            items.append(f'<strong aria-current="page" lang="{lang}">{name}</strong>')
        else:
            items.append(f'<a href="{edition_href(pagename, here, folder)}" hreflang="{lang}" '
                         f'lang="{lang}">{name}</a>')
    return (f'<nav class="{SWITCHER_CLASS}" aria-label="Language / 언어 / 言語" '
            'style="text-align:right;font-size:0.9em;margin-bottom:0.5em">'
            + " · ".join(items) + "</nav>\n")


def _add_switcher(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    editions = app.config.vitcourse_editions
    if not editions or doctree is None or "body" not in context:
        return  # no editions configured, or a generated page (search, index)
    context["body"] = switcher_html(pagename, app.config.vitcourse_edition, editions) + context["body"]


def _add_extra_path(app: Sphinx, config: Config) -> None:
    extra = str(EXTRA)
    if extra not in config.html_extra_path:
        config.html_extra_path.append(extra)


def setup(app: Sphinx) -> dict:
    app.add_config_value("vitcourse_edition", "en", "html")
    app.add_config_value("vitcourse_editions", {}, "html")
    app.connect("config-inited", _add_extra_path)
    app.connect("html-page-context", _add_switcher)
    app.connect("source-read", _remove_setup_cell)
    app.add_transform(LocalImages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
