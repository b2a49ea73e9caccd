"""The layout's import rules (DESIGN.md section 1), read from the source with ``ast``.

- a ``_private`` module is imported only inside its own package (subpackages count as
  inside): ``streamrnn.learn._core`` may import ``streamrnn._checks``, but
  ``streamrnn.stream`` may not import ``streamrnn.cells._kernels``;
- imports inside a ring are relative (``from .state import State``, not
  ``from streamrnn.state import State``);
- nothing imports upward: the core never imports ``streamrnn.adapters`` or
  ``streamrnn.apps``; the adapters never import ``streamrnn.apps``;
- every package directory is installed (listed in pyproject.toml).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RINGS = {"streamrnn": "streamrnn", "adapters": "streamrnn.adapters", "apps": "streamrnn.apps"}


def module_name(path: Path) -> tuple[str, bool]:
    """The import name of a library file, and whether it is a package's ``__init__``."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    ring = RINGS[parts[0]]
    is_pkg = parts[-1] == "__init__"
    if is_pkg:
        parts = parts[:-1]
    return ".".join([ring, *parts[1:]]), is_pkg


def library_files() -> list[Path]:
    return sorted(p for ring in RINGS for p in (ROOT / ring).rglob("*.py"))


def imports_of(path: Path) -> list[tuple[int, str, int]]:
    """``(line, absolute module imported, level)`` for every import in ``path``; a
    ``from package import name`` also yields ``package.name`` (it may be a module)."""
    name, is_pkg = module_name(path)
    package = name if is_pkg else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            out.append((node.lineno, target, node.level))
            out += [(node.lineno, f"{target}.{a.name}", node.level) for a in node.names]
    return out


def ring_of(module: str) -> str | None:
    for ring in ("streamrnn.adapters", "streamrnn.apps", "streamrnn"):
        if module == ring or module.startswith(ring + "."):
            return ring
    return None


def private_module(target: str) -> tuple[str, str] | None:
    """``(private module, its package)`` if ``target`` names a ``_private`` module (or a
    name inside one) of the library; ``None`` otherwise (a private NAME in a public
    module is not this rule's business)."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            module = ".".join(parts[: i + 1])
            return (module, ".".join(parts[:i])) if module in KNOWN_MODULES else None
    return None


KNOWN_MODULES = {module_name(p)[0] for p in library_files()}


def violations() -> list[str]:
    found = []
    order = {"streamrnn": 0, "streamrnn.adapters": 1, "streamrnn.apps": 2}
    for path in library_files():
        me, _ = module_name(path)
        my_ring = ring_of(me)
        where = f"{path.relative_to(ROOT)}"
        for line, target, level in imports_of(path):
            ring = ring_of(target)
            if ring is None:
                continue  # torch, numpy, ...
            if order[ring] > order[my_ring]:
                found.append(f"{where}:{line}: {my_ring} imports upward from {target}")
            private = private_module(target)
            if private is not None:
                module, owner = private
                if not (me == owner or me.startswith(owner + ".")):
                    found.append(f"{where}:{line}: imports private {module} from outside "
                                 f"its package {owner}")
            if level == 0 and ring == my_ring:
                found.append(f"{where}:{line}: absolute import {target} inside its own ring "
                             "(use a relative import)")
    return sorted(set(found))


def test_the_library_keeps_the_import_rules():
    assert violations() == []


def test_the_checker_catches_each_kind_of_violation(tmp_path, monkeypatch):
    # The rules above are only as good as the checker: feed it one file of each kind.
    fake = {
        "streamrnn/stream_bad.py": "from .cells._kernels import fused\n",
        "streamrnn/up_bad.py": "import streamrnn.adapters.audio\n",
        "adapters/apps_bad.py": "from streamrnn.apps import speech\n",
        "adapters/abs_bad.py": "from streamrnn.adapters.audio import AudioFeatures\n",
        "apps/ok.py": "from streamrnn.adapters.audio import AudioFeatures\nfrom . import x\n",
    }
    for rel, text in fake.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    for ring in ("streamrnn/cells", "adapters/audio"):
        (tmp_path / ring).mkdir(parents=True, exist_ok=True)
        (tmp_path / ring / "__init__.py").write_text("")
    (tmp_path / "streamrnn/cells/_kernels.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    monkeypatch.setattr(__import__(__name__), "KNOWN_MODULES",
                        {module_name(p)[0] for p in library_files()})
    found = "\n".join(violations())
    assert "stream_bad.py:1: imports private streamrnn.cells._kernels" in found
    assert "up_bad.py:1: streamrnn imports upward" in found
    assert "apps_bad.py:1: streamrnn.adapters imports upward" in found
    assert "abs_bad.py:1: absolute import" in found
    assert "apps/ok.py" not in found


def test_every_package_is_installed():
    text = (ROOT / "pyproject.toml").read_text()
    listed = set(re.findall(r'"(streamrnn[\w.]*)"', text.split("[tool.setuptools]")[1]))
    packages = {module_name(p)[0] for p in library_files() if p.name == "__init__.py"}
    missing = sorted(packages - listed)
    assert not missing, f"packages not in pyproject.toml's packages list: {missing}"


@pytest.mark.parametrize("ring", sorted(RINGS))
def test_every_package_says_what_its_room_is_for(ring):
    for init in (ROOT / ring).rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{init.relative_to(ROOT)} has no docstring"
