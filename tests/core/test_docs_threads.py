"""Every public class says what it promises under threads (issue 15, item 6).

The public classes are those in the ``__all__`` of the public modules below; each one's
docstring has a ``Threads`` section (numpydoc-style heading), so a user can tell which
objects are locked (StreamBank, OnlineLearner), which are values, and which need one
thread at a time. A new public class without it fails here.
"""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

PUBLIC = [
    "streamrnn", "streamrnn.cells", "streamrnn.heads", "streamrnn.shapes",
    "streamrnn.lookahead", "streamrnn.river", "streamrnn.river.experts",
    "streamrnn.distributed", "streamrnn.export", "streamrnn.utils", "streamrnn.engines",
    "streamrnn.adapters.audio", "streamrnn.adapters.sensor",
    "streamrnn.adapters.sensor.sources", "streamrnn.adapters.sensor.deltas",
    "streamrnn.adapters.tokens", "streamrnn.apps.speech", "streamrnn.apps.lm",
    "streamrnn.apps.forecast", "streamrnn.apps.serve",
]  # fmt: skip

_HEADING = re.compile(r"^Threads\n-------\n\S", re.M)


def public_classes() -> dict[str, type]:
    found = {}
    for name in PUBLIC:
        module = importlib.import_module(name)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if inspect.isclass(obj) and not issubclass(obj, BaseException):
                found.setdefault(obj, f"{name}.{attr}")
    return {v: k for k, v in found.items()}


CLASSES = public_classes()


def test_the_public_classes_are_found():
    names = set(CLASSES)
    assert {"streamrnn.Stream", "streamrnn.StreamBank", "streamrnn.OnlineLearner",
            "streamrnn.adapters.audio.AudioFeatures"} <= names
    assert len(names) > 50


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_each_public_class_documents_its_thread_safety(name):
    doc = inspect.getdoc(CLASSES[name]) or ""
    assert _HEADING.search(doc), f"{name}'s docstring has no 'Threads' section"


@pytest.mark.parametrize("name", ["streamrnn.StreamBank", "streamrnn.OnlineLearner"])
def test_the_locked_classes_say_so(name):
    doc = inspect.getdoc(CLASSES[name])
    section = doc[doc.index("Threads\n-------"):]
    assert "Safe under concurrent calls" in section and "RLock" in section
