"""
Every interface of the house.

Plugin authors import from here and nothing else: an auth plugin provides
L{IAuthenticatorFactory}, a routing plugin L{IRoutingStrategyFactory}, both
together with C{twisted.plugin.IPlugin}, and they are found by
C{twisted.plugin.getPlugins} (see C{realtime.discovery}).  The factories are
shaped like C{twisted.cred.strcred.ICheckerFactory}: a name, a description,
the options they take, and a method that builds the working object.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IAuthenticatorFactory(Interface):
    """
    Builds an L{IAuthenticator} from ``--auth NAME`` and its
    ``--auth-option KEY=VALUE`` pairs.
    """

    name = Attribute("str: the name given to --auth, e.g. 'wechat'")
    description = Attribute("str: one line shown by --list-plugins")
    options = Attribute(
        "Mapping[str, str]: each option this plugin accepts, mapped to a "
        "help text that names its default; anything else is refused"
    )

    def buildAuthenticator(options, reactor):
        """
        Check C{options} and build the authenticator.

        @param options: C{Mapping[str, str]} from the command line or config.
        @param reactor: an C{IReactorTime} for clocks and timeouts.
        @raise ValueError: naming the option when a value is missing or bad;
            the server refuses to start with that message.
        @return: an L{IAuthenticator}.
        """


class IAuthenticator(Interface):
    """
    Decides who a connection is.  Answers are values from C{realtime.values}
    (C{Accept}, C{Deny}, C{AwaitFirstMessage}), or Deferreds that fire with
    them, and never touch the connection itself.
    """

    def checkHandshake(request):
        """
        Decide at the opening handshake.

        @param request: a C{realtime.values.HandshakeRequest}.
        @return: C{Accept}, C{Deny} (an HTTP status: the upgrade is refused),
            or C{AwaitFirstMessage}; or a Deferred of one.
        """

    def checkFirstMessage(request, payload, isBinary):
        """
        Decide on the first message, after C{checkHandshake} answered
        C{AwaitFirstMessage}.

        @param request: the same C{HandshakeRequest}.
        @param payload: C{bytes} of the first message.
        @param isBinary: C{bool}.
        @return: C{Accept} or C{Deny} (a close code, 4000-4999); or a Deferred
            of one.
        """

    def warnings():
        """
        @return: C{Sequence[str]}: what is insecure about this configuration;
            each is logged loudly at startup.
        """


class ISession(Interface):
    """
    One open, authenticated WebSocket connection, as routing strategies and
    backends see it.
    """

    sessionId = Attribute("str: unique within this server process")
    identity = Attribute("realtime.values.Identity")
    uid = Attribute("str: identity.uid")

    def sendPrepared(frame):
        """
        Queue a message framed once by C{realtime.delivery.Frame}.

        @return: C{True} if queued; C{False} if the session is closing or was
            dropped as a slow consumer.
        """

    def close(code, reason):
        """
        Start the closing handshake with a WebSocket close code.
        """


class ISessionRegistry(Interface):
    """
    The sessions of this server process, by id and by uid.  No I/O.
    """

    def add(session):
        """
        Index an authenticated L{ISession}.
        """

    def discard(session):
        """
        Remove C{session} from every index at once; unknown sessions are
        ignored.
        """

    def get(sessionId):
        """
        @return: the L{ISession} with that id, or C{None}.
        """

    def sessionsOf(uid):
        """
        @return: a collection of the sessions of C{uid} (empty if none).
        """

    def allSessions():
        """
        @return: a collection of every session.
        """

    def uidCount():
        """
        @return: how many distinct uids hold at least one session.
        """

    def __len__():
        """
        @return: how many sessions there are.
        """


class IRoutingStrategyFactory(Interface):
    """
    Builds an L{IRoutingStrategy} from ``--routing NAME``.
    """

    name = Attribute("str: the name given to --routing, e.g. 'chat'")
    description = Attribute("str: one line shown by --list-plugins")
    options = Attribute("Mapping[str, str]: option name -> help text")

    def buildRoutingStrategy(options, reactor):
        """
        @raise ValueError: naming a bad option.
        @return: an L{IRoutingStrategy}.
        """


class IRoutingStrategy(Interface):
    """
    Decides what happens to a message an authenticated client sends.

    It chooses; it does no I/O.  The shell carries out the actions it returns.
    """

    def route(session, payload, isBinary, registry):
        """
        @param session: the sending L{ISession}.
        @param payload: C{bytes}.
        @param isBinary: C{bool}; text payloads are valid UTF-8.
        @param registry: the L{ISessionRegistry} of this process.
        @return: an iterable of actions from C{realtime.values} (C{Reply},
            C{Deliver}, C{Refuse}, C{Close}).
        """


class IBroker(Interface):
    """
    Carries backend pushes to the sessions they address, on every node.

    The memory broker delivers to this process only; a Redis broker fans out
    across processes.
    """

    def publish(envelope):
        """
        @param envelope: a C{realtime.values.Envelope}.
        @return: a Deferred firing with a C{realtime.values.PushResult}.
        """

    def connectionCount(uid):
        """
        @return: a Deferred firing with how many sessions C{uid} holds.
        """

    def stats():
        """
        @return: a Deferred firing with a C{dict} of counters
            (C{connections}, C{uids}, ...).
        """
