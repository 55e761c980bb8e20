"""
Every ``twistd realtime`` option: its name, help and default, in one table
that the command line (L{realtime.config.options}), the TOML file
(L{realtime.config.readers.readConfig}), the deployment files' tests and the
benchmark's in-process server all read.
"""

from __future__ import annotations

from typing import Any

from realtime.core.limits import LOOPBACK

#: (name, short, default, help): None means "not given"; see Options.defaults
PARAMETERS: list[tuple[str, str | None, str]] = [
    ("port", "p", "WebSocket and web endpoint; a bare number is tcp:NUMBER (default tcp:8080)"),
    ("api-port", None, "HTTP push API endpoint, or 'none'; a bare number keeps 127.0.0.1 (default tcp:8081:interface=127.0.0.1)"),
    ("push-port", None, "line-JSON push endpoint (Workerman Text protocol), or 'none'; a bare number keeps 127.0.0.1 (default tcp:5678:interface=127.0.0.1)"),
    ("auth", "a", "auth plugin: NAME or NAME:KEY=VALUE:... (default uid-first-packet)"),
    ("routing", "r", "routing plugin: NAME or NAME:KEY=VALUE:... (default uid)"),
    ("api-key", None, "key the HTTP API requires as 'Authorization: Bearer KEY' (default: read --api-key-file)"),
    ("api-key-file", None, "file holding the API key, created with a random key if missing (default realtime-api.key)"),
    ("head-timeout", None, "seconds a client has to send each HTTP request head, on every port (default 10)"),
    ("max-message-size", None, "largest message in bytes, from clients and from backends (default 1048576)"),
    ("max-message-frames", None, "frames one client message may have; more close the connection with 1009 (default 1024)"),
    ("ping-interval", None, "a client silent this many seconds is pinged, and dropped if silent twice as long; 0 disables (default 30)"),
    ("max-queued-bytes", None, "bytes written to a client (pushes, replies, errors, pongs) and not yet read by it, before it is dropped as a slow consumer (default 4194304)"),
    ("max-connections", None, "WebSocket connections in all, more are refused with 503; 0: no limit (default: the open-file limit minus a tenth, 100 to 1000, of it)"),
    ("max-connections-per-ip", None, "WebSocket connections per client address (an IPv6 /64), more are refused with 429; 0: no limit (default 1000)"),
    ("max-connections-per-uid", None, "connections one uid may hold, more are refused (429, or close 4008); 0: no limit (default 32)"),
    ("client-rate", None, "messages per second a connection may send, RATE[:BURST]; over it close 4029; 0: no limit (default 100:200)"),
    ("api-rate", None, "pushes per second the HTTP API key may make, RATE[:BURST]; over it 429; 0: no limit (default 1000:2000)"),
    ("store", None, "message store for history and offline queues: sqlite:PATH, memory, or a Redis URL shared by every node (default sqlite:realtime.sqlite3)"),
    ("broker", None, "how pushes reach sessions: memory (this process) or a Redis URL (redis://HOST:PORT/DB, rediss://, redis+sentinel://, redis+cluster://) for several nodes (default memory)"),
    ("workers", None, "processes serving the same ports, each a node on the shared --broker redis://...; 1: this process serves them itself (default 1)"),
    ("offline-ttl", None, "seconds a push to a uid without connections waits for it; 0 disables the offline queue (default 86400)"),
    ("offline-max", None, "pushes that may wait per uid; more are refused (default 100)"),
    ("max-uids-per-push", None, "uids one push may name (line port and HTTP API); more are refused (default 10000)"),
    ("log-format", None, "text or json: one JSON object per line, where twistd would log (default text)"),
    ("config", "c", "TOML file with any of these options (keys are the long option names)"),
]

DEFAULTS: dict[str, Any] = {
    "port": "tcp:8080",
    "api-port": "tcp:8081:interface=127.0.0.1",
    "push-port": "tcp:5678:interface=127.0.0.1",
    "auth": "uid-first-packet",
    "routing": "uid",
    "api-key": None,
    "api-key-file": "realtime-api.key",
    "head-timeout": 10.0,
    "max-message-size": 1024 * 1024,
    "max-message-frames": 1024,
    "ping-interval": 30.0,
    "max-queued-bytes": 4 * 1024 * 1024,
    "max-connections": None,
    "max-connections-per-ip": 1000,
    "max-connections-per-uid": 32,
    "trust-proxy": list(LOOPBACK),
    "client-rate": "100:200",
    "api-rate": "1000:2000",
    "store": "sqlite:realtime.sqlite3",
    "broker": "memory",
    "workers": 1,
    "offline-ttl": 86400.0,
    "offline-max": 100,
    "max-uids-per-push": 10000,
    "log-format": "text",
    "config": None,
    "namespace": [],
    "auth-option": [],
    "routing-option": [],
    "plugin-dir": [],
    "allowed-origin": [],
    "api-cors-origin": ["*"],
    "list-plugins": False,
}

LISTS = ("auth-option", "routing-option", "plugin-dir", "allowed-origin", "api-cors-origin", "namespace", "trust-proxy")
ENDPOINTS = ("port", "api-port", "push-port")
