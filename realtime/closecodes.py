"""
The WebSocket close codes this server sends, in one place so the README, the
clients and the tests agree on them.

1000-2999 are RFC 6455's; 4000-4999 are reserved for applications.  Every
code here is sent somewhere (C{tests/test_closecodes.py} checks it, and that
README's table lists exactly these): by this server's code, or by Autobahn
for the two in L{SENT_BY_AUTOBAHN}.  A refusal that keeps the connection
open (a channel the identity may not join, a push-only routing) is an error
reply, not a close code.
"""

#: a routing plugin's C{Close()} without a code; a client's own close is
#: answered with its code
NORMAL = 1000
GOING_AWAY = 1001
#: a frame RFC 6455 does not allow (sent by Autobahn)
PROTOCOL_ERROR = 1002
#: invalid UTF-8 in a text message or close reason (sent by Autobahn)
INVALID_PAYLOAD = 1007
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
#: the session fell behind by more than --max-queued-bytes (everything it
#: was sent counts: pushes, replies, errors, pongs); reconnect later
SLOW_CONSUMER = 1013

#: the first message did not authenticate the connection
AUTH_FAILED = 4001
#: no first message arrived within the authentication timeout
AUTH_TIMEOUT = 4002
#: the uid already holds --max-connections-per-uid connections
TOO_MANY_CONNECTIONS = 4008
#: more messages than --client-rate allows
RATE_LIMITED = 4029

DESCRIPTIONS = {
    NORMAL: "normal closure",
    GOING_AWAY: "server shutting down",
    PROTOCOL_ERROR: "WebSocket protocol error",
    INVALID_PAYLOAD: "invalid UTF-8 in a text message",
    POLICY_VIOLATION: "policy violation",
    MESSAGE_TOO_BIG: "message larger than --max-message-size, or in more frames than --max-message-frames",
    INTERNAL_ERROR: "internal server error",
    SLOW_CONSUMER: "slow consumer: too much unread data queued; reconnect",
    AUTH_FAILED: "authentication failed (first message)",
    AUTH_TIMEOUT: "no authentication message within the timeout",
    TOO_MANY_CONNECTIONS: "too many connections for this uid (--max-connections-per-uid)",
    RATE_LIMITED: "too many messages (--client-rate); reconnect later",
}

#: the codes Autobahn's frame parser sends itself; the others are named
#: where this server closes with them
SENT_BY_AUTOBAHN = frozenset({PROTOCOL_ERROR, INVALID_PAYLOAD})
