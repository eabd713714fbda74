"""
The public API of engine/, tasks/, evaluation/, convert/ and studies/ is annotated: every public
function and every method of a public class has a type on each parameter (self/cls aside) and a
return type (``__init__`` aside), and each name an annotation uses exists in its module (imported,
defined, a builtin, or imported under ``if TYPE_CHECKING:``), so that a renamed class cannot leave a
stale annotation behind (with ``from __future__ import annotations`` nothing evaluates them at run
time).
"""

import ast
import builtins
import importlib
import os

import pytest

from conftest import REPO

PACKAGES = ("engine", "tasks", "evaluation", "convert", "studies")


def _modules():
    for pkg in PACKAGES:
        root = os.path.join(REPO, "contrastive_det", pkg)
        for dirpath, _, names in os.walk(root):
            for name in sorted(names):
                if name.endswith(".py"):
                    yield os.path.relpath(os.path.join(dirpath, name), REPO)


def _public_functions(tree):
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if not node.name.startswith("_"):
                yield node.name, node
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    if not item.name.startswith("_") or item.name == "__init__":
                        yield f"{node.name}.{item.name}", item


def _type_checking_names(tree):
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    names |= {(a.asname or a.name).split(".")[0] for a in stmt.names}
    return names


def _root_names(annotation):
    """The names an annotation starts from (``torch`` of ``torch.Tensor``; strings parsed)."""
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        annotation = ast.parse(annotation.value, mode="eval").body
    out = set()
    for node in ast.walk(annotation):
        if isinstance(node, ast.Attribute):
            continue
        if isinstance(node, ast.Name):
            out.add(node.id)
    return out


@pytest.mark.parametrize("path", list(_modules()))
def test_public_signatures_are_annotated_with_names_that_exist(path):
    source = open(os.path.join(REPO, path)).read()
    tree = ast.parse(source)
    module = importlib.import_module(path[:-3].replace(os.sep, ".").removesuffix(".__init__"))
    known = set(vars(module)) | set(dir(builtins)) | _type_checking_names(tree)
    missing, unknown = [], []
    for name, fn in _public_functions(tree):
        args = fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs
        params = [a for a in args if a.arg not in ("self", "cls")]
        params += [a for a in (fn.args.vararg, fn.args.kwarg) if a is not None]
        untyped = [a.arg for a in params if a.annotation is None]
        if untyped:
            missing.append(f"{name}: parameters {untyped}")
        if fn.returns is None and fn.name != "__init__":
            missing.append(f"{name}: return type")
        annotations = [a.annotation for a in params if a.annotation is not None]
        annotations += [fn.returns] if fn.returns is not None else []
        for ann in annotations:
            unknown += [f"{name}: {n}" for n in sorted(_root_names(ann) - known)]
    assert not missing, f"{path}: unannotated public API: {missing}"
    assert not unknown, f"{path}: annotations name what the module does not define: {unknown}"
