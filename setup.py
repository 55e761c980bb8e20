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
        # [tls]: pyOpenSSL and service_identity, for ssl: endpoints (wss://)
        "twisted[tls]>=24.7",
        "autobahn>=24.4",
        "txaio>=23.1",
        "zope.interface>=6.0",
        "pyjwt>=2.8",
        "prometheus-client>=0.20",
    ],
    extras_require={
        "test": ["pytest>=8", "websockets>=13", "ruff>=0.6", "playwright>=1.45", "schemathesis>=4", "hypothesis>=6.100"],
    },
    entry_points={"console_scripts": ["realtime-push = realtime.client.cli:main"]},
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: Internet :: WWW/HTTP",
    ],
)
