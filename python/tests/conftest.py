"""Run the tests against this source tree's packages (python/flashmla, python/flash_mla)."""

import sys
from pathlib import Path

PYTHON_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PYTHON_DIR))
