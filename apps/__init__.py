"""streamrnn.apps: applications built from streamrnn's public parts and its adapters.

Installed under the import name ``streamrnn.apps`` (the repository keeps it in the root
folder ``apps/``). Each application brings its command (an entry point of the
``streamrnn.commands`` group), its checkpoints and, where it ships one, its model.

- :mod:`streamrnn.apps.speech` — a live spoken-digit recogniser (``streamrnn listen``).
- :mod:`streamrnn.apps.lm` — an online character language model
  (``streamrnn train-lm``, ``streamrnn generate``).
- :mod:`streamrnn.apps.forecast` — online forecasting of a sensor series
  (``streamrnn forecast``, ``streamrnn demo``).

Submodules are imported on demand, so a missing optional dependency of one application
never breaks another.
"""

__all__: list[str] = []
