"""
The room: everything of the server that touches Autobahn's, Twisted's or
txaio's internals, and nothing else.

C{privates} looks up each private name relied on, at import (an upgrade that
drops one fails there, naming it); C{connection} is the one subclass of
Autobahn's server protocol, holding every override of an Autobahn method;
C{opening} the fast opening handshake; C{rfc6455} the strict options;
C{options} Autobahn's per-connection options as class attributes;
C{endpoints}, C{transports} and C{logs} the Twisted and txaio ones.
C{tests/test_websocket_privates.py} checks that no module outside touches a
private name of those libraries and that C{type: ignore} appears only here.
"""
