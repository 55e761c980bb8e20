"""
Packaging for realtime.

``twisted/plugins/realtime_plugin.py`` is installed into Twisted's plugin
namespace (``twisted/`` and ``twisted/plugins/`` have no ``__init__.py``),
which is how ``twistd realtime`` finds the server and how the built-in auth
and routing plugins are found.
"""

from setuptools import find_packages, setup

setup(
    name="realtime",
    version="0.1.0",
    description="A plugin-based WebSocket push server on Twisted and Autobahn",
    long_description=open("README.rst", encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(exclude=["tests", "tests.*", "bench", "bench.*"]) + ["twisted.plugins"],
    package_data={"realtime.web": ["static/*"]},
    include_package_data=True,
    install_requires=[
        # Autobahn, Twisted and txaio: from the releases the suite was run
        # against (Autobahn 26.10 lacks a private name the fast handshake
        # uses) to below the next year's, which nobody has tested yet.  The
        # private names the server relies on are all looked up in
        # realtime/websocket/_autobahn/privates.py, which fails the import
        # naming any that is gone; .ci/run also runs the suite against the
        # newest releases the registry offers, past these bounds, so a new
        # release is known to work, or not, before the bounds move.
        # [tls]: pyOpenSSL and service_identity, for ssl: endpoints (wss://)
        "twisted[tls]>=26.10,<27",
        "autobahn>=26.11,<27",
        "txaio>=26.6,<27",
        "zope.interface>=6.0",
        "pyjwt>=2.8",
        "prometheus-client>=0.20",
        # the line port's JSON (realtime.core.jsoncodec.decodeQuickly)
        "orjson>=3.10,<4",
    ],
    extras_require={
        # redis-py's asyncio client with the hiredis parser: --store redis://
        "redis": ["redis[hiredis]>=5.2,<9"],
        "test": [
            "redis[hiredis]>=5.2,<9",
            "pytest>=8",
            "websockets>=13",
            "ruff>=0.6",
            "playwright>=1.45",
            "schemathesis>=4",
            "hypothesis>=6.100",
            # the webhook routing plugin of tests/test_routing_webhook.py calls
            # its backend with treq, as a third party's plugin would
            "treq>=24.9",
            # `mypy realtime` is part of the test command (README.rst)
            "mypy>=2.4",
            "mypy-zope>=1.0.17",
        ],
    },
    entry_points={"console_scripts": ["realtime-push = realtime.client.cli:main"]},
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: Internet :: WWW/HTTP",
    ],
)
