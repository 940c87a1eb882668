"""The integration tiers' scratch Redis: a redis-server this test session starts itself, on a free port.

The distributed tier brokers on its db 11 and the waiting tier on its db 12, each emptied before and
after use. No test ever writes to the shared server on 127.0.0.1:6379: a laptop's data there is safe.
`SMQ_TEST_REDIS_URL` / `SMQ_TEST_WAITING_REDIS_URL` point a tier at a server of your choosing instead;
the db they name is emptied before and after, so name one you keep nothing in.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.integration.aws.moto_server import Moto, moto_server
from tests.integration.distributed.harness import RedisServer, private_redis_server


@pytest.fixture(scope="session")
def scratch_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Memory only (no AOF): the tests that kill Redis start a durable server of their own."""
    with private_redis_server(tmp_path_factory.mktemp("scratch-redis"), durable=False) as server:
        yield server


def tier_broker_url(request: pytest.FixtureRequest, variable: str, db: int) -> str:
    """The URL the user named in `variable`, else db `db` of the session's scratch server."""
    explicit = os.environ.get(variable)
    if explicit:
        return explicit
    server: RedisServer = request.getfixturevalue("scratch_redis")
    return server.url_of_db(db)


@pytest.fixture(scope="session")
def moto() -> Iterator[Moto]:
    """moto's server on a free loopback port, for the session (tests/integration/aws/moto_server.py)."""
    with moto_server() as server:
        yield server
