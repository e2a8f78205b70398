"""Where the tests find what lies outside the checkout: the fixtures read it, and so does .ci/check_services.py,
which names what is missing before the tests start."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAFETY = Path(os.environ.get("ALVAR_DATASETS", REPO.parent / "shared" / "datasets")) / "active-learning-safety"
# The tests' Redis database (emptied first) when REDIS_URL is unset.
EXTERNAL_REDIS_DEFAULT = "redis://127.0.0.1:6379/15"
# A login that may create databases, when ALVAR_TEST_POSTGRES is unset.
POSTGRES_ADMIN_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
