"""What the tests rely on outside the checkout, checked before they start: each missing thing is named with where
it was looked for, instead of failing deep inside a fixture. Run by .ci/run with the project's environment."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import psycopg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.browser import CHROMEDRIVER, CHROMIUM  # noqa: E402
from tests.postgres_server import POSTGRES_BIN  # noqa: E402
from tests.service_locations import EXTERNAL_REDIS_DEFAULT, POSTGRES_ADMIN_DEFAULT, SAFETY  # noqa: E402


def redis_problem() -> str | None:
    url = os.environ.get("REDIS_URL") or EXTERNAL_REDIS_DEFAULT
    try:
        redis.Redis.from_url(url, socket_connect_timeout=5).ping()
    except redis.RedisError as error:
        return f"Redis at {url} ({error}): start one, or set REDIS_URL"
    return None


def postgres_problem() -> str | None:
    url = os.environ.get("ALVAR_TEST_POSTGRES") or POSTGRES_ADMIN_DEFAULT
    try:
        with psycopg.connect(url, connect_timeout=5) as connection:
            version = connection.info.server_version // 10000
    except psycopg.Error as error:
        return f"PostgreSQL at {url} ({error}): start PostgreSQL 15, or set ALVAR_TEST_POSTGRES"
    if version != 15:
        return f"PostgreSQL at {url} is {version}, the tests need 15"
    if not (POSTGRES_BIN / "pg_ctl").is_file():
        return f"PostgreSQL 15's programs in {POSTGRES_BIN} (a private cluster is stopped mid-test there)"
    return None


def programs_problem() -> str | None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    missing += [name for name in ("docker-compose", "runuser") if not shutil.which(name)]
    return f"programs: {', '.join(missing)}" if missing else None


def dataset_problem() -> str | None:
    wanted = SAFETY / "test_labeled.tsv"
    return None if wanted.is_file() else f"the safety dataset at {wanted}: set ALVAR_DATASETS"


def main() -> int:
    problems = [problem for check in (redis_problem, postgres_problem, programs_problem, dataset_problem)
                if (problem := check())]
    for problem in problems:
        print(f"missing: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
