"""The course site: built from notebooks/ without network, then checked in a real browser.

The module builds the book once (fast mode, every chapter executed, as `make book` does), serves it
from 127.0.0.1 and loads every page in headless chromium with every external host made
unresolvable. Each page must load with its title, show its images, typeset its math, render its
widgets and request nothing outside the machine; no internal link may be broken. A small demo book
checks the same machinery (widget, math, figure, Colab badge) whatever the chapters contain, and
that a failing notebook fails the build.

The site holds the three editions (English at the root, ko/ and ja/ from the catalogs in
locales/): every page of each gets the same checks, its text must be in its language, and the
language switcher must lead to the same page in the other editions.

To check a site you already built (`make book`), set VITCOURSE_BOOK_HTML=_build/html.
Screenshots of the landing page and two chapters (and of chapter 06 in each edition) land in
_build/screenshots/ for a person to see.
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
import posixpath
import re
import shutil
import subprocess
import tempfile
import threading
import urllib.request
from dataclasses import dataclass, field
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import nbformat
import pytest
import yaml
from PIL import Image

from tools.book import EDITIONS, Edition, build, chapters, first_heading, toc
from tools.book_sphinx import LOCAL_IMAGES, SWITCHER_CLASS
from tools.nbbuild import colab_url

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.integration]  # builds the book: make test-integration

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = chapters()
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
SCREENSHOTS = ROOT / "_build" / "screenshots"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
# Elements whose text MathJax leaves alone (code may legitimately contain "\(").
NO_MATH_TAGS = {"pre", "code", "script", "style", "textarea", "kbd", "samp"}
# Attributes that make the browser fetch something (an <a href> is only a link).
FETCHING = {("script", "src"), ("img", "src"), ("iframe", "src"), ("source", "src"),
            ("video", "src"), ("audio", "src"), ("embed", "src"), ("object", "data"),
            ("input", "src"), ("track", "src"), ("video", "poster")}
FETCHING_LINK_RELS = {"stylesheet", "icon", "shortcut", "preload", "modulepreload", "prefetch",
                      "manifest", "apple-touch-icon", "mask-icon"}


# -- parsing ---------------------------------------------------------------------------------

@dataclass
class Parsed:
    tags: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    text: list[str] = field(default_factory=list)  # text outside NO_MATH_TAGS
    title: str = ""


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out = Parsed()
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        self.out.tags.append((tag, a))
        for key in ("id", "name"):
            if a.get(key):
                self.out.ids.add(a[key])
        if tag in NO_MATH_TAGS:
            self._skip += 1
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        if tag in NO_MATH_TAGS and self._skip:
            self._skip -= 1
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.out.title += data
        elif not self._skip:
            self.out.text.append(data)


def parse(text: str) -> Parsed:
    p = _Parser()
    p.feed(text)
    return p.out


def fetched_urls(parsed: Parsed) -> list[str]:
    """What the browser fetches for this HTML (scripts, styles, images, frames, ...)."""
    urls = []
    for tag, a in parsed.tags:
        for t, attr in FETCHING:
            if tag == t and a.get(attr):
                urls.append(a[attr])
        if tag == "link" and a.get("href") and FETCHING_LINK_RELS & set(a.get("rel", "").split()):
            urls.append(a["href"])
        for attr in ("srcset", "imagesrcset"):
            urls += [c.split()[0] for c in a.get(attr, "").split(",") if c.strip()]
    return urls


def is_external(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in {"", "data", "blob", "about"}:
        return parts.scheme == "" and url.startswith("//")  # protocol-relative: external
    return parts.hostname not in LOCAL_HOSTS


# -- serving and loading pages ---------------------------------------------------------------

class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def send_error(self, code, message=None, explain=None) -> None:
        if self.path != "/favicon.ico":  # browsers ask for it whatever the page says
            self.server.failed.append(f"{code} {self.path}")
        super().send_error(code, message, explain)


@dataclass
class Page:
    url: str
    html: str        # as built
    dom: str         # after the browser ran its scripts
    requests: list[tuple[str, str]]  # (initiator, url) of every request chromium logged
    failed: list[str]  # requests to the site that failed ("404 /path") while the page loaded

    @property
    def external_requests(self) -> list[str]:
        # Chromium's own services (updates, accounts) show as "not an origin"; everything the
        # page asked for has the page's origin as initiator.
        return sorted({u for init, u in self.requests
                       if init != "not an origin" and is_external(u)})


class Site:
    """A built site served on 127.0.0.1 and opened in headless chromium."""

    def __init__(self, html_dir: Path, tmp: Path):
        if not CHROMIUM:
            # CI installs it (.ci/run) and must never skip; on a student's machine, where
            # `make test` cannot install system packages, say what to do instead of failing.
            message = ("the browser test needs chromium: `sudo apt-get install chromium` "
                       "(.ci/run installs it)")
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        self.dir, self.tmp = html_dir, tmp
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                         partial(_QuietHandler, directory=str(html_dir)))
        self.httpd.failed = []
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self._pages: dict[str, Page] = {}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def chromium(self, url: str, *args: str) -> subprocess.CompletedProcess:
        profile = tempfile.mkdtemp(dir=self.tmp)
        cmd = ["timeout", "60", CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
               "--virtual-time-budget=5000",
               # Any host but this machine fails to resolve: nothing can leave, and the
               # net log still records the attempt.
               "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", *args, url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=90)

    def page(self, rel: str) -> Page:
        if rel not in self._pages:
            url = self.base + rel
            netlog = Path(tempfile.mkdtemp(dir=self.tmp)) / "netlog.json"
            self.httpd.failed.clear()
            proc = self.chromium(url, f"--log-net-log={netlog}", "--dump-dom")
            assert proc.returncode == 0, f"chromium failed on {rel}: {proc.stderr[-2000:]}"
            self._pages[rel] = Page(url, (self.dir / rel).read_text(encoding="utf-8"),
                                    proc.stdout, _netlog_requests(netlog),
                                    list(self.httpd.failed))
        return self._pages[rel]

    def get(self, url: str) -> bytes:
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200, f"{url}: HTTP {response.status}"
            return response.read()

    def screenshot(self, rel: str, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        proc = self.chromium(self.base + rel, "--window-size=1280,1000", f"--screenshot={dest}")
        assert proc.returncode == 0 and dest.is_file(), f"no screenshot of {rel}: {proc.stderr}"
        return dest


def _netlog_requests(path: Path) -> list[tuple[str, str]]:
    log = json.loads(path.read_text())
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    out = []
    for event in log["events"]:
        params = event.get("params") or {}
        if names.get(event["type"]) == "URL_REQUEST_START_JOB" and "url" in params:
            out.append((params.get("initiator", ""), params["url"]))
    return out


# -- the checks every page gets --------------------------------------------------------------

def check_images(site: Site, page: Page, figures: int | None = None) -> int:
    """Every <img> of the rendered page is served, non-empty and decodes; the page shows exactly
    `figures` figure images (the notebook's image outputs, which Sphinx writes to _images/), not
    counting badges, logos or widgets; every widget image holds a picture. Returns the figures."""
    srcs = [a["src"] for tag, a in parse(page.dom).tags if tag == "img" and a.get("src")]
    shown = sum(urlsplit(src).path.startswith("_images/") and not src.endswith(".svg") for src in srcs)
    if figures is not None:
        assert shown == figures, f"{page.url}: {shown} figures shown, the notebook made {figures}"
    check_widget_images(page)
    for src in srcs:
        if src.startswith("blob:"):
            continue  # made in the page by a widget (ipywidgets.Image) from its embedded bytes
        if src.startswith("data:"):
            data = base64.b64decode(src.split(",", 1)[1]) if ";base64," in src else src.encode()
        else:
            url = urljoin(page.url, src)
            assert not is_external(url), f"{page.url}: image from outside the site: {url}"
            data = site.get(url)
        assert data, f"{page.url}: empty image {src[:80]}"
        if b"<svg" in data[:2000]:
            continue
        with Image.open(io.BytesIO(data)) as img:
            assert min(img.size) > 0, f"{page.url}: image {src[:80]} is {img.size}"
    return shown


WIDGET_STATE = '<script type="application/vnd.jupyter.widget-state+json">'
WIDGET_VIEW = 'type="application/vnd.jupyter.widget-view+json"'


def widget_models(page_html: str) -> dict[str, dict]:
    """The widget models embedded in a built page (the state html-manager renders from)."""
    models: dict[str, dict] = {}
    for chunk in page_html.split(WIDGET_STATE)[1:]:
        state = json.loads(html.unescape(chunk.split("</script>", 1)[0]))
        models.update(state["state"])
    return models


def check_widget_images(page: Page) -> int:
    """Each embedded ipywidgets Image (the explorers' figures, shown as blob: images) carries a
    non-empty picture that decodes; returns how many there are."""
    n = 0
    for model_id, model in widget_models(page.html).items():
        if model.get("model_name") != "ImageModel":
            continue
        buffers = [b for b in model.get("buffers", []) if b.get("path") == ["value"]]
        assert buffers, f"{page.url}: widget image {model_id} has no picture embedded"
        data = base64.b64decode(buffers[0]["data"])
        with Image.open(io.BytesIO(data)) as img:
            assert min(img.size) > 8, f"{page.url}: widget image {model_id} is {img.size}"
        n += 1
    return n


def check_math(page: Page) -> None:
    """Math in the built page is typeset by MathJax: no raw TeX left, no TeX errors."""
    n_math = sum("math" in a.get("class", "").split() for _, a in parse(page.html).tags)
    dom = parse(page.dom)
    text = "".join(dom.text)
    for raw in ("\\(", "\\[", "$$"):
        i = text.find(raw)
        assert i < 0, f"{page.url}: raw TeX left in the page: ...{text[max(0, i - 60):i + 60]}..."
    n_typeset = sum(tag == "mjx-container" for tag, _ in dom.tags)
    assert n_typeset >= n_math, f"{page.url}: {n_math} formulas but {n_typeset} typeset"
    assert not any(tag == "mjx-merror" for tag, _ in dom.tags), f"{page.url}: a TeX error"


def check_widgets(page: Page) -> None:
    """Every embedded widget view is rendered by the vendored html-manager: it puts a
    "widget-subarea" right before each view's script and renders the view into it (nested
    widgets carry the jupyter-widgets class too, so counting that class alone proves nothing)."""
    n_views = page.html.count(WIDGET_VIEW)
    rendered = re.findall(r'<div class="widget-subarea"><div class="([^"]*)"', page.dom)
    ok = [c for c in rendered if "jupyter-widgets" in c.split()]
    assert len(ok) == n_views, f"{page.url}: {n_views} widget views, {len(ok)} rendered"
    assert "Error displaying widget" not in page.dom, f"{page.url}: a widget failed to render"


def check_offline(page: Page) -> None:
    """Nothing requested outside the machine, and everything requested from the site is there."""
    # the net log is read at all: the page's own stylesheets are in it (were chromium to rename
    # its events, an empty log would pass everything below)
    assert any(u.endswith(".css") and not is_external(u) for _, u in page.requests), (
        f"{page.url}: the net log shows no request for the site's own CSS")
    assert not page.external_requests, f"{page.url} requested {page.external_requests}"
    assert not page.failed, f"{page.url}: requests the site could not serve: {page.failed}"


def image_outputs(executed: Path) -> int:
    """Figures a notebook produced: outputs whose displayed form is an image."""
    nb = nbformat.read(executed, as_version=4)
    richer = {"application/vnd.jupyter.widget-view+json", "application/javascript", "text/html"}
    return sum(1 for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
               if any(m.startswith("image/") for m in out.get("data", {}))
               and not richer & set(out.get("data", {})))


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    prebuilt = os.environ.get("VITCOURSE_BOOK_HTML")
    if prebuilt:
        path = Path(prebuilt).resolve()
        assert (path / "index.html").is_file(), f"VITCOURSE_BOOK_HTML={prebuilt}: no index.html"
        return path
    return build(fast=True, out=tmp_path_factory.mktemp("book") / "_build", lang="all")


@pytest.fixture(scope="module")
def site(built, tmp_path_factory):
    s = Site(built, tmp_path_factory.mktemp("chromium"))
    yield s
    s.close()


DEMO_NOTEBOOK = [
    nbformat.v4.new_markdown_cell(
        f"# 01 · Demo chapter\n\n[![Open In Colab]({COLAB_BADGE})](https://colab.research."
        "google.com/github/x/y/blob/main/notebooks/01_demo.ipynb)\n\n"
        "Inline $\\mathbf{x}_p \\in \\mathbb{R}^{N}$, "
        "display $$\\mathrm{softmax}(QK^T/\\sqrt{d})V$$"),
    nbformat.v4.new_code_cell("import ipywidgets as w\nw.IntSlider(value=7, description='patch')"),
    nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])\n"
                              "plt.title('demo')\nplt.show()"),
]


def write_demo(src: Path, cells: list) -> Path:
    src.mkdir(parents=True)
    (src / "index.md").write_text("# Demo book\n\n```{tableofcontents}\n```\n")
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, src / "01_demo.ipynb")
    return src


EXTERNAL_IMAGE = "https://example.invalid/remote.png"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    src = write_demo(tmp / "src", DEMO_NOTEBOOK)
    # a page that does fetch from outside: the offline check must catch it
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        f"# 02 · Remote\n\nA picture from elsewhere: <img src=\"{EXTERNAL_IMAGE}\" alt=\"remote\">")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, src / "02_remote.ipynb")
    html_dir = build(fast=True, source=src, out=tmp / "_build")
    s = Site(html_dir, tmp)
    yield s
    s.close()


# -- the table of contents (no build needed) -------------------------------------------------

def test_toc_lists_every_chapter_in_order_with_its_heading():
    on_disk = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert on_disk, "no chapters in notebooks/"
    entries = [c for part in toc()["parts"] for c in part["chapters"]]
    listed = [e["file"] for e in entries if e.get("title")]
    assert listed == [p.stem for p in on_disk]
    for entry, path in zip(entries, on_disk):
        assert entry["title"] == first_heading(path)
        assert entry["title"].startswith(path.name[:2])  # "01 · ...": the chapter's number


def test_toc_picks_up_a_new_chapter_without_any_edit(tmp_path):
    src = write_demo(tmp_path / "src", DEMO_NOTEBOOK)
    shutil.copy(src / "01_demo.ipynb", src / "02_more.ipynb")
    (src / "scratch.ipynb").write_text((src / "01_demo.ipynb").read_text())
    chapters_listed = [c["file"] for c in toc(src)["parts"][0]["chapters"]]
    assert chapters_listed == ["01_demo", "02_more"]


def test_toc_and_build_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match="source must hold the landing page index.md"):
        toc(tmp_path)
    with pytest.raises(ValueError, match="source must be a folder"):
        chapters(tmp_path / "missing")
    untitled = write_demo(tmp_path / "src", [nbformat.v4.new_markdown_cell("no heading")])
    with pytest.raises(ValueError, match="path '01_demo.ipynb' must start with a Markdown heading"):
        toc(untitled)
    with pytest.raises(ValueError, match="out must be a folder named _build"):
        build(out=tmp_path / "site")


def test_config_points_at_vendored_files_and_is_offline():
    cfg = yaml.safe_load((ROOT / "book.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "force"
    assert cfg["execute"]["raise_on_error"] is True
    assert cfg["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    extra = ROOT / "book" / "extra"
    sphinx = cfg["sphinx"]["config"]
    scripts = [sphinx["mathjax_path"], *sphinx["nb_ipywidgets_js"]]
    for path in scripts:
        # Sphinx serves these from "_static/<path>": resolve that against the site's root.
        rel = posixpath.normpath(posixpath.join("_static", path))
        assert not is_external(path) and (extra / rel).is_file(), f"{path}: not vendored"
    versions = json.loads((extra / "vendor" / "VERSIONS.json").read_text())
    assert set(versions) == {"mathjax", "requirejs", "html-manager"}
    for name in versions:
        assert (extra / "vendor" / name / "LICENSE").is_file(), f"{name}: licence missing"
    for local in LOCAL_IMAGES.values():
        assert local.is_file() and b"<svg" in local.read_bytes()


# -- the demo book: the machinery, whatever the chapters contain -----------------------------

def test_demo_page_renders_widget_math_figure_and_local_badge_offline(demo):
    page = demo.page("01_demo.html")
    assert "Demo chapter" in parse(page.dom).title
    check_offline(page)
    check_math(page)
    assert sum(tag == "mjx-container" for tag, _ in parse(page.dom).tags) >= 2
    check_widgets(page)
    assert "widget-slider" in page.dom, "the embedded slider was not rendered"
    assert check_images(demo, page, figures=1) == 1  # the plot (the badge and logos are not figures)
    with pytest.raises(AssertionError, match="1 figures shown, the notebook made 2"):
        check_images(demo, page, figures=2)  # a missing figure is noticed
    broken = Page(page.url, page.html, page.dom.replace('class="widget-subarea"', 'class="x"', 1),
                  page.requests, page.failed)
    with pytest.raises(AssertionError, match="1 widget views, 0 rendered"):
        check_widgets(broken)  # an unrendered widget is noticed
    badge = [a for tag, a in parse(page.dom).tags
             if tag == "img" and a.get("alt") == "Open In Colab"]
    assert badge and not is_external(urljoin(page.url, badge[0]["src"]))
    assert COLAB_BADGE not in page.html


def test_the_offline_check_catches_a_request_to_outside(demo):
    page = demo.page("02_remote.html")
    assert EXTERNAL_IMAGE in [u for _, u in page.requests], "chromium did not even try to fetch it"
    with pytest.raises(AssertionError, match="example.invalid"):
        check_offline(page)


def test_a_failing_notebook_fails_the_build(tmp_path):
    src = write_demo(tmp_path / "src", [nbformat.v4.new_markdown_cell("# 01 · Broken"),
                                        nbformat.v4.new_code_cell("1 / 0")])
    with pytest.raises(subprocess.CalledProcessError):
        build(source=src, out=tmp_path / "_build")


def write_catalog(path: Path, translations: dict[str, str], lang: str) -> None:
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    catalog = Catalog(locale=lang)
    for msgid, msgstr in translations.items():
        catalog.add(msgid, msgstr)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        write_po(f, catalog)


def test_editions_share_one_run_and_carry_the_translated_prose(tmp_path):
    runs = tmp_path / "runs.txt"
    src = write_demo(tmp_path / "src", [
        nbformat.v4.new_markdown_cell("# 01 · Demo chapter\n\nA patch is a token."),
        nbformat.v4.new_code_cell(f"with open({str(runs)!r}, 'a') as f:\n    f.write('run\\n')\n"
                                  "print('patch grid 7x7')")])
    locales = tmp_path / "locales"
    write_catalog(locales / "ko" / "LC_MESSAGES" / "01_demo.po",
                  {"01 · Demo chapter": "01 · 데모 장", "A patch is a token.": "패치는 토큰입니다."}, "ko")
    html_dir = build(fast=True, source=src, out=tmp_path / "_build", lang="en,ko", locales=locales)
    assert runs.read_text().splitlines() == ["run"], "the ko edition executed the notebook again"
    en = (html_dir / "01_demo.html").read_text(encoding="utf-8")
    ko = (html_dir / "ko" / "01_demo.html").read_text(encoding="utf-8")
    assert '<html lang="ko"' in ko and '<html lang="en"' in en
    assert "패치는 토큰입니다." in ko and "A patch is a token." not in ko
    assert "A patch is a token." in en
    assert ko.count("patch grid 7x7") == en.count("patch grid 7x7") >= 1  # the one run's output
    assert "01 · 데모 장" in parse(ko).title
    # a page without a catalog stays English (as Sphinx leaves any untranslated message)
    assert "Demo book" in (html_dir / "ko" / "index.html").read_text(encoding="utf-8")
    # rebuilding only ko replaces it and keeps the English site
    build(fast=True, source=src, out=tmp_path / "_build", lang="ko", locales=locales)
    assert (html_dir / "01_demo.html").is_file() and (html_dir / "ko" / "01_demo.html").is_file()
    assert runs.read_text().splitlines() == ["run", "run"], "a new build must execute afresh"


def test_build_rejects_an_unknown_edition(tmp_path):
    with pytest.raises(ValueError, match="lang must be 'all' or a comma-separated list"):
        build(source=write_demo(tmp_path / "src", DEMO_NOTEBOOK), out=tmp_path / "_build", lang="fr")


CJK_SAMPLES = {"ko": "한국어 패치 어텐션 위치 임베딩", "ja": "日本語 パッチ 位置埋め込み 自己注意"}
MISSING = "\u0378"  # an unassigned code point: every font draws it as the missing-glyph box


@pytest.mark.parametrize("lang", sorted(CJK_SAMPLES))
def test_the_editions_script_is_drawn_with_a_real_font_not_missing_glyph_boxes(tmp_path, lang):
    """The browser draws Korean / Japanese text with real glyphs: without a CJK font (Debian's
    fonts-noto-cjk, which .ci/run installs) every character would be the same "tofu" box, and
    the line would look exactly like a line of missing glyphs."""
    pages = tmp_path / "pages"
    pages.mkdir()
    sample = CJK_SAMPLES[lang]
    boxes = "".join(MISSING if ch != " " else " " for ch in sample)
    for name, text in (("text", sample), ("boxes", boxes)):
        (pages / f"{name}.html").write_text(
            f'<!doctype html><html lang="{lang}"><meta charset="utf-8"><body style="margin:0;'
            f'background:#fff"><p style="font-size:40px;margin:10px">{text}</p></body></html>',
            encoding="utf-8")
    site = Site(pages, tmp_path)
    try:
        shots = {name: site.screenshot(f"{name}.html", tmp_path / f"{name}.png") for name in ("text", "boxes")}
    finally:
        site.close()
    with Image.open(shots["text"]) as text, Image.open(shots["boxes"]) as boxes:
        a, b = text.convert("L"), boxes.convert("L")
        assert sum(a.histogram()[:128]) > 500, f"{lang}: the sample drew (almost) no ink"
        diff = sum(1 for x, y in zip(a.getdata(), b.getdata()) if abs(x - y) > 64)
    assert diff > 2000, (f"{lang}: the text looks like missing-glyph boxes ({diff} pixels differ): "
                         "install a CJK font, e.g. `sudo apt-get install fonts-noto-cjk`")


# -- the real book -----------------------------------------------------------------------------

EDITION_CHAPTERS = [(e, c) for e in EDITIONS.values() for c in CHAPTERS]
# The share of letters in the edition's script a translated page must show (its code and
# outputs stay English; a page left untranslated shows ~0).
SCRIPTS = {"ko": re.compile(r"[\uac00-\ud7a3]"), "ja": re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")}


def edition_path(edition: Edition, name: str) -> str:
    return f"{edition.folder}/{name}" if edition.folder else name


def titles(edition: Edition) -> dict[str, str]:
    return {c["file"]: c["title"] for part in toc(edition=edition)["parts"] for c in part["chapters"]
            if c.get("title")}


def check_switcher(site: Site, page: Page, edition: Edition, pagename: str) -> None:
    """The switcher names every edition; the others link to this page in their folder."""
    nav = page.html.split(f'class="{SWITCHER_CLASS}"', 1)
    assert len(nav) == 2, f"{page.url}: no language switcher"
    nav_html = nav[1].split("</nav>", 1)[0]
    links = {a.get("hreflang"): a["href"] for tag, a in parse(nav_html).tags if tag == "a"}
    assert set(links) == set(EDITIONS) - {edition.lang}, f"{page.url}: switcher links {links}"
    for lang, href in links.items():
        expected = site.base + edition_path(EDITIONS[lang], f"{pagename}.html")
        assert urljoin(page.url, href) == expected, f"{page.url}: {lang} -> {href}, not {expected}"


def check_language(page: Page, edition: Edition, pagename: str) -> None:
    """The page is in its edition's language as far as its catalog is translated: a finished
    catalog's page is mostly in the edition's script; a sentence not yet translated reads in
    English (the catalog's messages are checked one by one in tests/test_editions.py)."""
    tag = next(a for t, a in parse(page.html).tags if t == "html")
    assert tag.get("lang") == edition.lang, f"{page.url}: <html lang={tag.get('lang')!r}>"
    if edition.lang in SCRIPTS:
        from tools.translations import stats

        catalog = stats(ROOT / "locales" / edition.lang / "LC_MESSAGES" / f"{pagename}.po")
        main = page.dom.split('id="main-content"', 1)[-1]
        text = "".join(parse(main).text)
        letters = sum(ch.isalpha() for ch in text)
        share = len(SCRIPTS[edition.lang].findall(text)) / max(letters, 1)
        if catalog.translated == catalog.messages:
            assert share > 0.3, f"{page.url}: only {share:.0%} of the letters are {edition.name}"
        elif catalog.translated:
            assert share > 0, f"{page.url}: none of its {catalog.translated} translated messages shows"


@pytest.mark.parametrize("edition,chapter", EDITION_CHAPTERS,
                         ids=[f"{e.lang}-{c.stem}" for e, c in EDITION_CHAPTERS])
def test_chapter_page_in_the_browser(site, built, edition, chapter):
    page = site.page(edition_path(edition, f"{chapter.stem}.html"))
    heading = titles(edition)[chapter.stem]
    dom = parse(page.dom)
    assert heading in html.unescape(dom.title), f"title {dom.title!r} lacks {heading!r}"
    check_offline(page)
    check_math(page)
    check_widgets(page)
    check_switcher(site, page, edition, chapter.stem)
    check_language(page, edition, chapter.stem)
    # Every edition shows the figures of the one run (the editions share the execution).
    executed = built.parent / "jupyter_execute" / chapter.name
    check_images(site, page, figures=image_outputs(executed) if executed.is_file() else None)
    # Launch button (from book.yml's repository; the theme's launch menu, not the badge) and the
    # badge, served by the site itself; both open the edition's own notebook.
    # (read from the page as built: Bootstrap's tooltip script moves `title` away in the browser)
    target = colab_url(edition_path(edition, chapter.name))
    launch = [a for tag, a in parse(page.html).tags if tag == "a"
              and a.get("href") == target and "colab" in a.get("title", "").lower()
              and "dropdown-item" in a.get("class", "").split()]
    assert launch, f"no Colab launch button for {target}"
    badge_links = [a for tag, a in dom.tags if tag == "a" and a.get("href", "").startswith(
        "https://colab.research.google.com/github/")]
    assert badge_links and all(a["href"] == target for a in badge_links), \
        f"badge links {[a['href'] for a in badge_links]}, expected {target}"
    assert any(tag == "img" and a.get("src", "").endswith("colab-badge.svg") and not is_external(
        urljoin(page.url, a["src"])) for tag, a in dom.tags), "no local Colab badge"


@pytest.mark.parametrize("edition", EDITIONS.values(), ids=list(EDITIONS))
def test_landing_page_lists_every_chapter(site, edition):
    page = site.page(edition_path(edition, "index.html"))
    check_offline(page)
    check_math(page)
    check_switcher(site, page, edition, "index")
    check_language(page, edition, "index")
    # the chapter list in the page's own text (the sidebar lists them on every page anyway)
    main = page.dom.split('id="main-content"', 1)[-1]
    hrefs = {a.get("href", "").split("#")[0] for tag, a in parse(main).tags if tag == "a"}
    missing = [p.stem for p in CHAPTERS if f"{p.stem}.html" not in hrefs]
    assert not missing, f"landing page does not link to {missing}"
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", main)).split())  # code blocks included
    if edition.folder:
        assert "make lab" in text and "make test" in text, "the landing page lacks the two commands"
        return
    for said in ("Who it is for", "Prerequisites", "How to run it", "make lab", "make test", "Colab",
                 "Fashion-MNIST"):
        assert said in text, f"the landing page does not say {said!r}"


@pytest.mark.parametrize("edition", EDITIONS.values(), ids=list(EDITIONS))
def test_instructors_page_loads_offline(site, edition):
    page = site.page(edition_path(edition, "instructors.html"))
    check_offline(page)
    check_switcher(site, page, edition, "instructors")
    check_language(page, edition, "instructors")
    text = html.unescape(re.sub(r"<[^>]+>", "", page.dom))  # code is split into highlighted spans
    assert "python -m vitcourse grade" in text
    if not edition.folder:
        assert "instructors" in html.unescape(parse(page.dom).title).lower() and "Exercises" in text


def test_no_page_fetches_anything_from_outside(built):
    offenders = []
    for path in built.rglob("*.html"):
        for url in fetched_urls(parse(path.read_text(encoding="utf-8"))):
            if is_external(url):
                offenders.append(f"{path.relative_to(built)}: {url}")
    for path in built.rglob("*.css"):
        for url in re.findall(r"(?:url\(|@import\s+)['\"]?([^'\")\s]+)", path.read_text(
                encoding="utf-8", errors="replace")):
            if is_external(url):
                offenders.append(f"{path.relative_to(built)}: {url}")
    assert not offenders, "\n".join(offenders[:20])


def test_no_internal_link_is_broken(built):
    ids: dict[Path, set[str]] = {}

    def ids_of(path: Path) -> set[str]:
        if path not in ids:
            ids[path] = parse(path.read_text(encoding="utf-8")).ids
        return ids[path]

    broken = []
    # The site's pages; _static/ holds the theme's Jinja templates (.html), not pages.
    pages = sorted(p for p in built.rglob("*.html")
                   if not {"_static", "vendor"} & set(p.relative_to(built).parts))
    assert len(pages) >= len(EDITIONS) * (len(CHAPTERS) + 1)
    for path in pages:
        parsed = parse(path.read_text(encoding="utf-8"))
        refs = [a["href"] for tag, a in parsed.tags if tag in {"a", "link"} and a.get("href")]
        refs += fetched_urls(parsed)
        for ref in refs:
            parts = urlsplit(ref)
            if parts.scheme or parts.netloc or ref.startswith(("javascript:", "mailto:")):
                continue
            target = path if not parts.path else (path.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file() or built.resolve() not in [target, *target.parents]:
                broken.append(f"{path.relative_to(built)} -> {ref}")
            elif parts.fragment and target.suffix == ".html" and \
                    unquote(parts.fragment) not in ids_of(target):
                broken.append(f"{path.relative_to(built)} -> {ref} (no such anchor)")
    assert not broken, f"{len(broken)} broken links:\n" + "\n".join(broken[:20])


def test_screenshots_of_landing_page_and_two_chapters(site):
    # chapter 01 (figures, math), 06 (the widgets) and the last one
    chosen = [f"{p.stem}.html" for p in CHAPTERS[1:2] + [p for p in CHAPTERS if p.name.startswith("06")]
              + CHAPTERS[-1:]]
    editions_06 = [edition_path(e, p.name) for e in EDITIONS.values() if e.folder for p in
                   map(Path, chosen) if p.name.startswith("06")]
    shots = list(dict.fromkeys(["index.html", *chosen, *editions_06]))
    for rel in shots:
        path = site.screenshot(rel, SCREENSHOTS / rel.replace(".html", ".png"))
        with Image.open(path) as img:
            gray = img.convert("L")
            assert img.size == (1280, 1000)
            histogram = gray.histogram()
            ink = sum(histogram[:200]) / (img.size[0] * img.size[1])  # non-white pixels
            assert ink > 0.01, f"{rel}: the screenshot is blank"
