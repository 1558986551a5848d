"""Puts the in-repo SDK (``sdk/python/src``) first on ``sys.path``, so tests run against the
working copy without an install step. Import this before ``airlock_sdk``::

    import tests.sdk_path  # noqa: F401

    # isort: split
    from airlock_sdk import Airlock
"""

import sys
from pathlib import Path

SDK_SRC = Path(__file__).resolve().parent.parent / "sdk" / "python" / "src"
if str(SDK_SRC) not in sys.path:
    sys.path.insert(0, str(SDK_SRC))
