"""Sphinx glue for the deflation site (loaded by ``docs/conf.py``).

- ``.. deflation-module:: NAME``: a module's page. For a module with ``__all__`` (a public API:
  ``deflation.montecarlo``) every public name, data included; for any other module its docstring
  and members, less those documented under a public name (``deflation.flow.FlowResult`` is
  ``deflation.FlowResult``), plus functions that a decorator hides from autodoc
  (``jax.custom_jvp``).
- References into the package must resolve; references to other packages may not. With no network
  there is no intersphinx, so a reference to another package (``jax.Array``, ``numpy.ndarray``,
  ``diffrax.Tsit5``, jaxtyping's ``Float``) is rendered as plain code instead of a link. An object
  documented under its public name is also found under the module that defines it, and a
  module-local short name (``:class:`Observation``` in ``deflation.integrate``) is looked up in the
  package. Anything else unresolved (``deflation.nope``, a misspelt name) is left to Sphinx's
  nitpicky check, which ``-W`` turns into an error.
- The public names (``__all__``) of the modules in ``api_complete_modules`` must all be documented:
  a name added to ``deflation.__all__`` without a place in the API reference fails the build.
- Field types that napoleon takes from annotations (``Float[Array, "*B K"]``) are shown as code,
  not parsed as reST (where ``*B`` would start an emphasis).
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import re
import sys
import types

from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

PACKAGE = "deflation"
_TYPE_LINE = re.compile(r"^(\s*):type: (.+)$")
_SHORTEN = [(re.compile(r"\bjaxlib\._jax\.Array\b"), "Array"), (re.compile(r"\bjaxtyping\."), ""),
            (re.compile(r"\bjax\.Array\b"), "Array")]


def literal_field_types(app, what, name, obj, options, lines):
    """``:type: Float[Array, '*B K']`` -> ``:type: ``Float[Array, '*B K']``` (after napoleon)."""
    for i, line in enumerate(lines):
        m = _TYPE_LINE.match(line)
        if m and not m.group(2).startswith((":", "``")):
            text = m.group(2)
            for pattern, repl in _SHORTEN:
                text = pattern.sub(repl, text)
            lines[i] = f"{m.group(1)}:type: ``{text}``"


def _identifiable(obj) -> bool:
    """Whether ``obj`` can be told apart by identity (not a shared int, str, None, ...)."""
    return not isinstance(obj, (int, float, complex, str, bytes, bool, type(None), types.ModuleType))


def _lookup(path: str):
    """The object named by a dotted path, or raise ``LookupError``."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                raise LookupError(path)
            obj = getattr(obj, attr)
        return obj
    raise LookupError(path)


def _public_objects(config) -> set[int]:
    """ids of the objects named in the ``__all__`` of the public API modules."""
    ids = set()
    for api in config.api_complete_modules:
        module = importlib.import_module(api)
        ids |= {id(getattr(module, n)) for n in getattr(module, "__all__", [])
                if _identifiable(getattr(module, n, None))}
    return ids


def _data_doc(name: str, value) -> list[str]:
    """The ``#:`` comment of a constant where the package defines it (a re-export has none)."""
    from sphinx.pycode import ModuleAnalyzer

    for modname, module in sorted(sys.modules.items()):
        if not modname.startswith(PACKAGE) or getattr(module, name, None) is not value:
            continue
        try:
            docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        except Exception:  # noqa: BLE001 - no source
            continue
        if ("", name) in docs:
            return [line for line in docs["", name] if line.strip()]
    return []


class ModuleDirective(SphinxDirective):
    """``.. deflation-module:: deflation.flow`` (see the module docstring)."""

    required_arguments = 1

    def run(self):
        modname = self.arguments[0]
        module = importlib.import_module(modname)
        parent, _, leaf = modname.rpartition(".")
        # ``deflation.partition`` is the function, not the module: index the module's members only
        shadowed = bool(parent) and getattr(importlib.import_module(parent), leaf, module) is not module
        lines = [f".. automodule:: {modname}", "   :members:"]
        public_all = getattr(module, "__all__", None)
        if public_all is not None:
            for name in public_all:
                value = getattr(module, name)
                if name.startswith("__") or inspect.isclass(value) or callable(value):
                    continue
                lines += ["", f".. py:data:: {name}", f"   :module: {modname}"]
                if len(repr(value)) <= 60:
                    lines.append(f"   :value: {value!r}")
                lines += [""] + [f"   {line}" for line in _data_doc(name, value)]
        else:
            public = _public_objects(self.config)
            exclude = sorted(n for n, obj in vars(module).items()
                             if not n.startswith("_") and _identifiable(obj) and id(obj) in public)
            if exclude:
                lines.append(f"   :exclude-members: {', '.join(exclude)}")
            hidden = [n for n, obj in vars(module).items()
                      if not n.startswith("_") and id(obj) not in public and callable(obj)
                      and not inspect.isclass(obj) and not inspect.isfunction(obj)
                      and getattr(obj, "__module__", None) == modname and getattr(obj, "__wrapped__", None)
                      and obj.__doc__]
            for name in hidden:
                lines += ["", f".. autofunction:: {modname}.{name}"]
        if shadowed:
            lines[0:2] = [f".. py:currentmodule:: {modname}", "", f".. automodule:: {modname}", "   :members:",
                          "   :no-index:"]
        return self.parse_text_to_nodes("\n".join(lines))


class StudyParamsDirective(SphinxDirective):
    """``.. deflation-study-params::``: the table of a study file's ``[params]`` keys, generated from
    ``deflation.montecarlo.study.PARAMS`` (so it cannot go stale)."""

    def run(self):
        from deflation.montecarlo.study import EXPERIMENTS, PARAMS

        rows = []
        for name, p in PARAMS.items():
            applies = "all" if set(p.experiments) == set(EXPERIMENTS) else ", ".join(p.experiments)
            default = "required or Theorem 1" if p.default is None else f"``{p.default!r}``"
            rows.append((f"``{name}``", applies, default, "yes" if p.sweep else "no", p.doc.replace("|", "\\|")))
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 12 16 16 9 47", "",
                 "   * - key", "     - experiments", "     - default", "     - sweepable", "     - meaning"]
        for row in rows:
            lines += [f"   * - {row[0]}"] + [f"     - {cell}" for cell in row[1:]]
        return self.parse_text_to_nodes("\n".join(lines))


def _documented(app) -> dict[int, str]:
    """id(object) -> documented full name, for every documented object of the package."""
    cache = getattr(app.env, "_deflation_documented", None)
    if cache is None:
        cache = {}
        for full in app.env.get_domain("py").objects:
            if not full.startswith(PACKAGE + "."):
                continue
            try:
                obj = _lookup(full)
            except Exception:  # noqa: BLE001 - attributes documented from docstrings only
                continue
            if _identifiable(obj):
                cache.setdefault(id(obj), full)
        app.env._deflation_documented = cache
    return cache


def _package_objects(name: str) -> set[int]:
    """ids of the package's own objects called ``name``, in any loaded module of the package."""
    found = set()
    for modname, module in list(sys.modules.items()):
        if module is None or not (modname == PACKAGE or modname.startswith(PACKAGE + ".")):
            continue
        obj = getattr(module, name, None)
        if obj is None or not _identifiable(obj):
            continue
        home = getattr(obj, "__module__", None) or modname
        if home.split(".")[0] == PACKAGE:
            found.add(id(obj))
    return found


def _is_external(name: str) -> bool:
    """A name of another package: ``jax.Array``, ``numpy.ndarray``, or a short name that jaxtyping,
    ``jax``, ``jax.typing`` or the builtins export (``Float``, ``Array``, ``ArrayLike``)."""
    root = name.split(".")[0]
    if not root or root == PACKAGE:
        return False
    if "." in name:
        if root in sys.modules:
            return True
        try:
            importlib.import_module(root)
        except Exception:  # noqa: BLE001 - not a module: a misspelt or missing name
            return False
        return True
    import jax
    import jax.typing
    import jaxtyping

    return any(hasattr(m, name) for m in (jaxtyping, jax, jax.typing, builtins))


def _docstring_owner(node) -> str:
    """``deflation.integrate.Solution`` for a node that autodoc made from that object's docstring."""
    while node is not None:
        source = getattr(node, "source", None) or ""
        m = re.search(r"docstring of ([\w.]+)", source)
        if m:
            return m.group(1)
        node = node.parent
    return ""


def resolve_reference(app, env, node, contnode):
    """Resolve what Sphinx could not (see the module docstring); ``None`` leaves the warning."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "").lstrip(".~")
    parts = [p.strip() for p in re.split(r"[/,]", target)]
    if len(parts) > 1 and all(_is_external(p) for p in parts):  # Raises: ``ValueError/TypeError: ...``
        return contnode
    if _is_external(target):
        return contnode  # another package: code, not a link (no intersphinx offline)
    if target.startswith(PACKAGE + "."):
        try:
            obj = _lookup(target)
        except Exception:  # noqa: BLE001 - a broken reference: Sphinx reports it
            return None
        ids = {id(obj)} if _identifiable(obj) else set()
    elif "." not in target:  # a short name, local to the module whose docstring holds it
        objects = env.get_domain("py").objects
        context = _docstring_owner(node).split(".")
        for i in range(len(context) - 1, 0, -1):
            full = ".".join(context[:i] + [target])
            if full in objects:
                return env.get_domain("py").resolve_xref(
                    env, node["refdoc"], app.builder, node.get("reftype", "obj"), full, node, contnode)
        ids = _package_objects(target)
    else:
        return None
    documented = _documented(app)
    names = {documented[i] for i in ids if i in documented}
    if not names and "." not in target:  # a documented constant of the package (``SUCCESS``)
        names = {full for full in env.get_domain("py").objects
                 if full.startswith(PACKAGE + ".") and full.rsplit(".", 1)[-1] == target}
    if len(names) != 1:
        return None
    (full,) = names
    if full == target:
        return None
    py = env.get_domain("py")
    return py.resolve_xref(env, node["refdoc"], app.builder, node.get("reftype", "obj"), full, node, contnode)


def check_public_names(app, env):
    documented = set(env.get_domain("py").objects)
    for modname in app.config.api_complete_modules:
        module = importlib.import_module(modname)
        for name in getattr(module, "__all__", []):
            if not name.startswith("__") and f"{modname}.{name}" not in documented:
                logger.warning(f"public name {modname}.{name} (in {modname}.__all__) is not in the API reference",
                               type="deflation", subtype="api")


def setup(app: Sphinx):
    app.add_config_value("api_complete_modules", [], "env")
    app.add_directive("deflation-module", ModuleDirective)
    app.add_directive("deflation-study-params", StudyParamsDirective)
    app.connect("autodoc-process-docstring", literal_field_types, priority=600)  # after napoleon (500)
    app.connect("missing-reference", resolve_reference)
    app.connect("env-check-consistency", check_public_names)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
