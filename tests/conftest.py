"""
Run every test in a scratch working directory, so files the tests and the
servers they start create (trial's C{mktemp} directories, API key files,
SQLite stores) never land in the checkout.
"""

import asyncio
import os

import pytest

if os.environ.get("REALTIME_TEST_REACTOR") == "asyncio":
    # before anything imports the default reactor: the tests under
    # tests/redis need the loop redis-py runs on (realtime.redisio)
    from twisted.internet import asyncioreactor

    _loop = asyncio.new_event_loop()
    asyncio.set_event_loop(_loop)
    asyncioreactor.install(_loop)
else:
    collect_ignore = ["redis"]


@pytest.fixture(autouse=True, scope="session")
def _scratchWorkingDirectory(tmp_path_factory: pytest.TempPathFactory):
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(cwd)
