"""
realtime: a plugin-based WebSocket push server on Twisted and Autobahn.

Start it with ``twistd -n realtime``; see README.rst.
"""

__version__ = "0.1.0"
