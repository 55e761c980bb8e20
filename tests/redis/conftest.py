"""
The tests that need Redis run on Twisted's asyncio reactor, the one
redis-py's asyncio client can run on (L{realtime.redisio}); the top-level
C{tests/conftest.py} installs it when C{REALTIME_TEST_REACTOR=asyncio} and
otherwise leaves this directory out.
"""
