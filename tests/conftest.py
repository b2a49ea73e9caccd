"""Tests are grouped by property in folders; their shared helpers (``_oracle``, ``_tbptt``,
``_twins``, ``_data``) live here, importable from every folder."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
