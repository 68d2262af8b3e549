"""Sphinx extension: the book loads nothing from another host, and numbers figures within chapters.

Jupyter Book v1 always loads ``sphinx_thebe``, which adds to every page a script that names a
CDN copy of thebe, a second copy of the same constant (a script error in the browser) and, on
notebook pages, a placeholder Binder repository that is not ours. The book has no live kernels,
so this extension detaches sphinx-thebe's page hooks before any page is read. (MathJax is served
from ``_static/`` by ``sphinx-mathjax-offline``, listed beside this extension in ``_config.yml``.)
"""


def _detach_thebe(app):
    for event in ("env-before-read-docs", "doctree-resolved"):
        listeners = app.events.listeners.get(event, [])
        listeners[:] = [lst for lst in listeners if not getattr(lst.handler, "__module__", "").startswith("sphinx_thebe")]


def _number_figures_by_chapter(app, env):
    """Figures of chapter NN (``notebooks/NN-*``) are numbered NN.1, NN.2, ... in their order on the page,
    captions and ``{numref}`` alike (Sphinx numbers them 1, 2, ... across the whole book otherwise)."""
    renumbered = []
    for docname, by_type in getattr(env, "toc_fignumbers", {}).items():
        stem = docname.rsplit("/", 1)[-1]
        chapter = stem.split("-", 1)[0]
        if not (docname.startswith("notebooks/") and chapter.isdigit()):
            continue
        for figtype, numbers in by_type.items():
            order = sorted(numbers, key=lambda figure_id: numbers[figure_id])
            by_type[figtype] = {figure_id: (int(chapter), k) for k, figure_id in enumerate(order, start=1)}
        renumbered.append(docname)
    return renumbered


def setup(app):
    app.connect("builder-inited", _detach_thebe)
    app.connect("env-get-updated", _number_figures_by_chapter, priority=900)  # after Sphinx's own numbering
    return {"parallel_read_safe": True, "parallel_write_safe": True}
