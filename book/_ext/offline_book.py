"""Sphinx extension: the book loads nothing from another host.

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


def setup(app):
    app.connect("builder-inited", _detach_thebe)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
