"""
Run every test in a scratch working directory, so files the tests and the
servers they start create (trial's C{mktemp} directories, API key files,
SQLite stores) never land in the checkout.
"""

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _scratchWorkingDirectory(tmp_path_factory: pytest.TempPathFactory):
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(cwd)
