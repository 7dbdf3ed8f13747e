// Loaded after require.js and before the vendored @jupyter-widgets/html-manager (see book.yml).
// html-manager loads its fonts from next to its AMD module's URL, which RequireJS would otherwise
// place under the page's folder (as on a CDN): point the module at the vendored copy instead.
(function () {
  var src = document.currentScript.src;
  var base = src.slice(0, src.lastIndexOf("/") + 1);
  require.config({paths: {"@jupyter-widgets/html-manager/dist": base + "html-manager"}});
})();
