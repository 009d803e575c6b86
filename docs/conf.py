"""Sphinx configuration of gdsim's documentation: ``python -m sphinx -W -b html docs docs/_build/html``.

The API reference is autodoc + numpydoc over the docstrings; the gallery's text is README's
*Gallery* section, read at build time (one place for it). No network is needed.
"""

import inspect
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document this checkout's gdsim, installed or not

import gdsim  # noqa: E402

project = "gdsim"
author = "gdsim contributors"
copyright = "gdsim contributors"
version = release = gdsim.__version__

extensions = ["sphinx.ext.autodoc", "numpydoc", "sphinx.ext.mathjax", "sphinx.ext.viewcode"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_theme_options = {"description": "gradient descent, simulated", "page_width": "1100px"}
html_static_path: list = []

autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types; signatures stay readable
numpydoc_show_class_members = False  # autodoc's :members: lists them once
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
default_role = "code"  # `x` in a docstring is code, as in README


def gallery_from_readme():
    """README's *Gallery* section in reStructuredText (bold, code, images: all it uses)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Gallery\n", 1)[1].split("\n## ", 1)[0]
    text = re.sub(r"!\[([^]]*)\]\((figures/[^)]+)\)", r"\n.. image:: ../\2\n   :alt: \1\n   :width: 100%\n", section)
    text = re.sub(r"`([^`]+)`", r"``\1``", text)  # Markdown's code (some spans cross a line)
    return "Gallery\n=======\n\n" + text


CITED = re.compile(r"\[(\d+)\]_")
DEFINITION = re.compile(r"^\.\. \[(\d+)\] .*(?:\n   .*)*", re.M)
DEFINITION_LABEL = re.compile(r"^\.\. \[(\d+)\] ", re.M)


def module_references(module_name):
    """``{label: ".. [label] ..." lines}`` of the References of a module, else of its nearest package."""
    parts = module_name.split(".")
    while parts:
        module = sys.modules.get(".".join(parts))
        doc = (inspect.getdoc(module) or "") if module else ""
        found = {m[1]: m[0].splitlines() for m in DEFINITION.finditer(doc)}
        if found:
            return found
        parts.pop()
    return {}


def cite_module_references(app, what, name, obj, options, lines):
    """Give a docstring the references it cites from its module's References section.

    gdsim's functions cite ``[n]_`` from their module's (or package's) list; numpydoc makes
    each docstring's citations its own, so the cited entries are appended as the
    docstring's References (the source keeps one list per module).
    """
    if what == "module":
        return
    text = "\n".join(lines)
    missing = sorted(set(CITED.findall(text)) - set(DEFINITION_LABEL.findall(text)), key=int)
    if not missing:
        return
    references = module_references(getattr(obj, "__module__", None) or name.rpartition(".")[0])
    if "References" in lines or set(missing) - set(references):
        raise ValueError(f"{name}: cites {missing}; its module's References define {sorted(references)}")
    lines += ["", "References", "----------"] + [line for label in missing for line in references[label]]



def source_read(app, docname, source):
    if docname == "gallery":
        source[0] = source[0].replace(".. README-GALLERY", gallery_from_readme())


def setup(app):
    app.connect("source-read", source_read)
    app.connect("autodoc-process-docstring", cite_module_references, priority=400)  # before numpydoc
