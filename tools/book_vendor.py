"""Refresh the JavaScript the book serves itself: MathJax 3, RequireJS, the ipywidgets embedder.

Out of the box, Jupyter Book pages load these from CDNs, so an offline site shows raw TeX and
blank widgets. We commit a trimmed copy under ``book/extra/vendor/`` (about 6.7 MB; the licences
allow it) so that building the book needs no network at all. This script is for maintainers
only, to bump a version: it fetches the pinned packages with ``npm pack`` (the npm registry),
copies the files the site loads, and writes ``book/extra/vendor/VERSIONS.json``. Next to them,
``widgets-config.js`` is ours (it tells RequireJS where html-manager lives) and is left alone.

    .venv/bin/python tools/book_vendor.py          # re-vendor the pinned versions
    .venv/bin/python tools/book_vendor.py --check  # list what is vendored, fetch nothing
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "book" / "extra" / "vendor"  # copied as-is to the site root

# name in book/vendor -> (npm spec, licence, files to keep: globs relative to the package root)
PACKAGES: dict[str, tuple[str, str, list[str]]] = {
    "mathjax": ("mathjax@3.2.2", "Apache-2.0", [
        "LICENSE",
        # The combined component Sphinx uses by default, plus what it loads lazily: TeX
        # extensions (autoload), the CHTML fonts, the menu and the accessibility helpers.
        # Left out: the speech-rule engine (es5/sre, 4 MB, only for the optional explorer).
        "es5/tex-mml-chtml.js",
        "es5/input/tex/extensions/*",
        "es5/output/chtml/fonts/woff-v2/*",
        "es5/ui/*",
        "es5/a11y/*",
    ]),
    "requirejs": ("requirejs@2.3.8", "MIT", ["require.js"]),
    # html-manager 1.x renders ipywidgets 8 state; embed-amd.js is one self-contained bundle.
    # Its Font Awesome fonts: browsers take the first format they support, woff2.
    "html-manager": ("@jupyter-widgets/html-manager@1.0.15", "BSD-3-Clause", [
        "dist/embed-amd.js",
        "dist/embed.js.LICENSE.txt",
        "dist/*.woff2",
    ]),
}

BSD3_JUPYTER = """\
Copyright (c) 2015 Project Jupyter Contributors
All rights reserved.

Redistribution and use in source and binary forms, with or without modification, are permitted
provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this list of
   conditions and the following disclaimer.
2. Redistributions in binary form must reproduce the above copyright notice, this list of
   conditions and the following disclaimer in the documentation and/or other materials provided
   with the distribution.
3. Neither the name of the copyright holder nor the names of its contributors may be used to
   endorse or promote products derived from this software without specific prior written
   permission.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS OR
IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND
FITNESS FOR A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR
CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE,
DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY,
WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN
ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
"""

MIT_REQUIREJS = """\
RequireJS is released under the MIT license (see the header of require.js):
Copyright jQuery Foundation and other contributors, https://jquery.org/

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""

EXTRA_LICENCES = {"html-manager": BSD3_JUPYTER, "requirejs": MIT_REQUIREJS}


def _strip_prefix(path: str) -> str:
    """Paths inside the site drop the package's dist folders: mathjax/es5/x -> mathjax/x."""
    for prefix in ("es5/", "dist/"):
        if path.startswith(prefix):
            return path[len(prefix):]
    return path


def fetch(name: str, spec: str, keep: list[str], tmp: Path) -> dict:
    out = subprocess.run(["npm", "pack", "--json", "--pack-destination", str(tmp), spec],
                         check=True, capture_output=True, text=True).stdout
    info = json.loads(out)[0]
    unpack = tmp / name
    with tarfile.open(tmp / info["filename"]) as tar:
        tar.extractall(unpack, filter="data")
    pkg = unpack / "package"
    dest = VENDOR / name
    shutil.rmtree(dest, ignore_errors=True)
    kept = 0
    for path in sorted(pkg.rglob("*")):
        rel = path.relative_to(pkg).as_posix()
        if path.is_file() and any(fnmatch.fnmatch(rel, g) for g in keep):
            target = dest / _strip_prefix(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            kept += path.stat().st_size
    if name in EXTRA_LICENCES:
        (dest / "LICENSE").write_text(EXTRA_LICENCES[name])
    return {"npm": spec, "version": info["version"], "integrity": info["integrity"],
            "bytes": kept}


def describe() -> dict[str, int]:
    """Bytes vendored per package (what is committed now)."""
    return {p.name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
            for p in sorted(VENDOR.iterdir()) if p.is_dir()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="print what is vendored; fetch nothing")
    args = parser.parse_args(argv)
    if not args.check:
        if shutil.which("npm") is None:
            print("book_vendor: npm is needed to re-vendor (apt install npm)", file=sys.stderr)
            return 1
        VENDOR.mkdir(parents=True, exist_ok=True)
        versions = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, (spec, licence, keep) in PACKAGES.items():
                versions[name] = {**fetch(name, spec, keep, Path(tmp)), "licence": licence}
        (VENDOR / "VERSIONS.json").write_text(json.dumps(versions, indent=2) + "\n")
    for name, size in describe().items():
        print(f"{name:14s} {size / 1e6:5.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
