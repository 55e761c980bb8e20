"""
Every interface of the house.

Plugin authors import C{realtime.plugin}, which re-exports the ones they
need with the values and helpers that go with them.  An auth plugin provides
L{IAuthenticatorFactory}, a routing plugin L{IRoutingStrategyFactory}, both
together with C{twisted.plugin.IPlugin}, and they are found by
C{twisted.plugin.getPlugins} (see C{realtime.config.discovery}).  The factories are
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
    Decides who a connection is at its opening handshake.  Answers are
    values from C{realtime.values} (C{Accept}, C{Deny}, C{AwaitFirstMessage}),
    or Deferreds that fire with them, and never touch the connection itself.

    This is all a handshake-time plugin provides; the optional hooks are
    interfaces of their own, found with C{providedBy} (like
    L{IChannelAuthorizer}): L{IFirstMessageAuthenticator} to decide on the
    first message, L{IWarnings} to announce an insecure configuration.
    """

    def checkHandshake(request):
        """
        Decide at the opening handshake.

        @param request: a C{realtime.values.HandshakeRequest}.
        @return: C{Accept}, C{Deny} (an HTTP status: the upgrade is refused),
            or C{AwaitFirstMessage} (only from an L{IFirstMessageAuthenticator}:
            the shell refuses it from anything else); or a Deferred of one.
        """


class IFirstMessageAuthenticator(IAuthenticator):
    """
    An L{IAuthenticator} that may answer C{AwaitFirstMessage} and then
    decides on the connection's first message (Workerman-style clients that
    send their uid, or a signed packet, once the socket is open).
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


class IWarnings(Interface):
    """
    Optionally provided by a built plugin (an authenticator or a routing
    strategy) whose configuration can be insecure: a demo mode, a short
    secret.  Found with C{providedBy}; a plugin with nothing to warn about
    does not provide it.
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
        Queue a message framed once by C{realtime.delivery.fanout.Frame}.

        @return: C{True} if queued; C{False} if the session is closing or was
            dropped as a slow consumer.
        """

    def holdDeliveries():
        """
        Keep frames sent from now on back (in order) until
        C{releaseDeliveries}: used while offline messages are fetched, so
        they arrive before anything pushed meanwhile.
        """

    def releaseDeliveries(first):
        """
        Write the frames C{first}, then everything held back, and stop holding.
        """

    def isOpen():
        """
        @return: whether frames can still be written to this session.
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


class IRegistryObserver(Interface):
    """
    Told when the registry's sessions change, for a broker that subscribes
    to what this node's sessions need (a uid's pushes, a channel's
    messages) and keeps the cluster's presence.  Called synchronously,
    after the change; an observer does its I/O later, never in the call.
    """

    def sessionAdded(session, first):
        """
        C{session} was indexed; C{first} tells whether its uid had no
        session here before.
        """

    def sessionRemoved(session, last):
        """
        C{session} was forgotten; C{last} tells whether its uid has no
        session here any more.
        """

    def subscribed(subscription, first):
        """
        C{subscription} (with C{channel}, C{uid}) was indexed; C{first}
        tells whether its channel had no subscription here before.
        """

    def unsubscribed(subscription, last):
        """
        C{subscription} was forgotten; C{last} tells whether its channel
        has no subscription here any more.
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


class IRoutingContextUser(Interface):
    """
    Optionally provided by an L{IRoutingStrategyFactory} whose strategy uses
    the server's own services (L{IRoutingContext}); checked with
    C{providedBy}.  The server then builds its strategy with
    L{buildRoutingStrategyInContext} once those services exist, and never
    calls C{buildRoutingStrategy}, which such a factory may refuse with a
    C{ValueError}.
    """

    def buildRoutingStrategyInContext(options, reactor, context):
        """
        @param options: as for C{buildRoutingStrategy}.
        @param reactor: as for C{buildRoutingStrategy}.
        @param context: the L{IRoutingContext} of this server.
        @raise ValueError: naming a bad option.
        @return: an L{IRoutingStrategy}.
        """


class IRoutingContext(Interface):
    """
    What the server offers the routing strategy of an L{IRoutingContextUser}
    at build time: its services, so that a strategy reaches them through
    this interface and the shell knows nothing of any strategy.
    """

    registry = Attribute("ISessionRegistry: the sessions of this process")
    channels = Attribute("IChannelService: channels with history, presence and authorization")


class IChannelService(Interface):
    """
    Channels carried out for sessions: subscribe (with resume from a
    position), unsubscribe, publish, presence, ping; who may do which; and
    each session's subscriptions, kept here by session id.
    """

    def request(session, request):
        """
        Carry out one request of C{session}.

        @param session: the asking L{ISession}.
        @param request: a C{realtime.core.channelwire.Request}.
        @return: a Deferred firing with the result (a C{dict}, the reply's
            C{result}), or failing with C{realtime.push.channels.RequestError}
            (a documented error code), C{realtime.store.health.StoreUnavailable}
            or C{ShuttingDown}, or anything else for a bug.
        """

    def subscriptionsOf(sessionId):
        """
        @return: a C{Collection[str]} of the channels the session with that id
            is subscribed to (empty if none).
        """

    def sessionClosed(session):
        """
        C{session} is gone: leave every channel it was subscribed to
        (announcing leaves) and forget it.  The server calls this once per
        authenticated session; a session it never saw is ignored.
        """


class IRoutingStrategy(Interface):
    """
    Decides what happens to a message an authenticated client sends.

    It chooses; the shell carries out the actions it answers with, and only
    the shell writes to connections.  A strategy that must ask someone first
    (the channel service, a backend over HTTP) answers with a Deferred.

    The actions for one session's messages are carried out in the order the
    messages arrived, whether a message was answered at once or by a
    Deferred: while an answer is pending, the strategy is still asked about
    the next messages at once (so their work overlaps), and their actions
    wait, in order, behind it.  At most
    C{realtime.websocket.routed.MAX_PENDING} answers may wait per session;
    one more closes it with 1008 (policy violation).  Once the session is
    closed, actions addressed to it (C{Reply}, C{Refuse}, C{Close}) are
    dropped and C{Deliver}s still carried out: its messages were received.
    A failed Deferred (or an exception from C{route}) is logged and closes
    the session with 1011; a strategy that wants the client told and the
    connection kept answers with C{Refuse} instead.
    """

    def route(session, payload, isBinary, registry):
        """
        @param session: the sending L{ISession}.
        @param payload: C{bytes}.
        @param isBinary: C{bool}; text payloads are valid UTF-8.
        @param registry: the L{ISessionRegistry} of this process.
        @return: an iterable of actions from C{realtime.values} (C{Reply},
            C{Deliver}, C{Refuse}, C{Close}), or a Deferred firing with one.
        """


class IBroker(Interface):
    """
    Carries pushes to the sessions they address, on every node.

    The memory broker delivers to this process only; a broker for several
    processes (scale-out) fans each push out to all of them.  It delivers
    and nothing more: offline queues, channel history and framing are the
    router's (L{IPublisher}), above it.
    """

    problem = Attribute(
        "str | None: why the broker cannot deliver now (its server is "
        "unreachable, say), or None while it can; /readyz answers 503 with "
        "it and realtime_broker_up is 0 while it is set"
    )

    def publish(envelope):
        """
        Deliver C{envelope} to the sessions it addresses.

        The answer is a C{realtime.values.PushResult} itself when nothing
        had to wait (the memory broker, whenever the fan-out has no
        chunked delivery ahead of it: nearly every unicast push), or a
        Deferred firing with one (a networked broker, a delivery behind
        others): Twisted's "maybe synchronous" result, so the line port's
        hot path costs no Deferred.  Callers test with
        C{isinstance(result, Deferred)}, or take C{maybeDeferred}.

        @param envelope: a C{realtime.values.Envelope}.
        @return: a C{PushResult}, or a Deferred firing with one.
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

    def presence(channel):
        """
        @return: a Deferred firing with C{{"channel": ..., "uids": {uid:
            subscriptions}, "connections": n}}.
        """


class IBatchBroker(IBroker):
    """
    A broker whose answers come later (a networked one) and that can take
    the pushes of one read of the line port as one operation: one Deferred
    for the lot, where each push would otherwise pay for its own and its
    callbacks.  Optional: the router batches through it when its broker
    provides it and publishes one by one otherwise.
    """

    def publishBatch(envelopes):
        """
        Deliver each of C{envelopes}, in order, as L{IBroker.publish} would.

        @param envelopes: a sequence of C{realtime.values.Envelope}.
        @return: a Deferred firing with one outcome per envelope, in order:
            its C{PushResult}, or the C{Failure} that envelope alone met (a
            failure is a value in the list, so one push refused does not
            fail the others); failing as a whole only when none could be
            sent (the broker's server unreachable).
        """


class IHistoryBroker(IBroker):
    """
    A broker that keeps a channel message in the channel's history and
    publishes it in one step (the Redis broker wired with the Redis store on
    the same Redis: one script, L{realtime.store.redisscripts.APPEND_PUBLISH}).

    One step is what keeps a channel's messages in offset order on every
    node when several nodes publish to it: appending, then publishing, lets
    another node's message overtake between the two.  It is optional: the
    channel publisher (C{realtime.push.router.ChannelPublisher}) uses it when
    its broker provides it and appends then publishes otherwise.
    """

    recovered = Attribute(
        "int: channel messages this node missed live (pub/sub is at most once) "
        "and delivered from the history instead"
    )

    def publishStored(channel, data, retention, now):
        """
        Append C{data} to C{channel}'s history and deliver it to the
        channel's subscribers on every node, with its offset and epoch.

        @param channel: C{str}.
        @param data: C{bytes}, the message's JSON text.
        @param retention: C{realtime.values.Retention}.
        @param now: C{float}, seconds since the epoch.
        @return: a Deferred firing with a C{realtime.values.PushResult}
            with C{offset} and C{epoch}; failing when the message could not
            be kept and published (never a false C{ok}).
        """


class IPublisher(Interface):
    """
    What the backend ports (the HTTP API, the line port) push through and
    ask: the router, which adds offline queues, channel history and the
    routing's framing to its L{IBroker}.  It is not a broker itself: it
    holds one, and nothing else reaches past it to push.
    """

    def publish(envelope):
        """
        Push C{envelope}: to uids (queued for those without a connection,
        if offline queues are on), to everyone, to sessions, or to a
        channel (appended to its history first, if it keeps one).

        @return: a C{realtime.values.PushResult}, or a Deferred firing with
            one, as L{IBroker.publish}: synchronous whenever nothing waits.
        """

    def connectionCount(uid):
        """
        @return: a Deferred firing with how many sessions C{uid} holds.
        """

    def stats():
        """
        @return: a Deferred firing with a C{dict} of counters.
        """

    def presence(channel):
        """
        @return: a Deferred firing with who is subscribed to C{channel}.
        """


class IBatchPublisher(IPublisher):
    """
    A publisher that can take several pushes as one operation
    (L{IBatchBroker}): the line port hands it each read's pushes when its
    broker answers later, so a Redis node pays one Deferred per read, not
    one per push.
    """

    def publishBatch(envelopes):
        """
        Push each of C{envelopes}, in order, as L{IPublisher.publish} would.

        @return: a Deferred firing with one C{PushResult} or C{Failure} per
            envelope, in order, as L{IBatchBroker.publishBatch}.
        """


class IChannelAuthorizer(Interface):
    """
    Optionally provided by an L{IAuthenticator} that decides, per channel,
    what an identity may do; without it, an identity may subscribe to the
    channels (``fnmatch`` patterns) in C{Identity.channels}, to its own
    ``user:<uid>`` channel, and to namespaces marked public.
    """

    def maySubscribe(identity, channel):
        """
        @return: C{bool}, or a Deferred firing with one.
        """

    def mayPublish(identity, channel):
        """
        Asked only for namespaces where clients may publish at all.

        @return: C{bool}, or a Deferred firing with one.
        """


class IPushFraming(Interface):
    """
    Optionally provided by an L{IRoutingStrategy} whose clients expect
    backend pushes inside its own protocol's frames.
    """

    def framePush(payload, isBinary):
        """
        @return: C{(payload, isBinary)} as the client should receive the push.
        """


#: seconds a uid stays known after its last connection (30 days)
SEEN_RETENTION = 30 * 24 * 3600.0


class IMessageStore(Interface):
    """
    Where messages wait: channel history with offsets (for resuming
    subscribers) and offline queues (for uids with no connection).

    Every method answers a Deferred and never blocks the reactor: a store on
    disk does its I/O in a thread.  Times are given by the caller (the
    reactor's clock), so tests drive retention with a C{Clock}.
    """

    def append(stream, payload, isBinary, retention, now):
        """
        Keep a message in C{stream}'s history under the stream's next offset.

        Offsets start at 1 and grow by one per message within an epoch; the
        epoch (a random string) changes only when the stream's history is
        lost (a memory store restarted, a database deleted), which is how a
        resuming client learns that an offset no longer means what it did.
        Appends to one stream complete in the order they were asked for.
        Retention is enforced here: older messages beyond
        C{retention.maxCount}, or older than C{retention.ttl}, are dropped.

        @param stream: C{str}, a channel name.
        @param payload: C{bytes}.
        @param isBinary: C{bool}.
        @param retention: C{realtime.values.Retention}.
        @param now: C{float}, seconds since the epoch.
        @return: a Deferred firing with a C{realtime.values.StoredMessage}.
        """

    def history(stream, since, now):
        """
        What C{stream} holds after position C{since}.

        @param since: a C{realtime.values.Position}, or C{None} for no
            messages, only the current position.
        @return: a Deferred firing with a C{realtime.values.History}: the
            stream's current epoch and top offset, the messages after
            C{since} in offset order, and C{recovered}, which is C{False} when
            C{since} cannot be served without a gap (another epoch, an offset
            older than the oldest kept, or beyond the top) - the client must
            then be told it lost messages.
        """

    def queueOffline(uid, payload, isBinary, limits, now):
        """
        Keep a push for C{uid}, who has no connection, until it connects.

        @param limits: C{realtime.values.OfflineLimits} (how many, how long).
        @return: a Deferred firing with C{True} if queued, C{False} if the
            uid's queue is full (the push is refused, not silently dropped).
        """

    def takeOffline(uid, now):
        """
        Remove and return C{uid}'s unexpired queued pushes, oldest first.

        @return: a Deferred firing with a C{list} of
            C{realtime.values.StoredMessage}.
        """

    def markSeen(seen):
        """
        Remember that each uid in C{seen} (a C{Mapping[str, float]}: uid to
        when it connected) connected then: only uids seen within
        C{SEEN_RETENTION} seconds get an offline queue, so a push to a uid
        that never connected (a typo, a stale id) is answered as undelivered
        instead of being kept for nobody.

        @return: a Deferred.
        """

    def wasSeen(uid, now):
        """
        @return: a Deferred firing with whether C{uid} connected within the
            last C{SEEN_RETENTION} seconds.
        """

    def offlineUids(now):
        """
        @return: a Deferred firing with the C{set} of uids that have
            unexpired pushes waiting (read once at startup, so that a
            connecting uid with nothing waiting costs no store access).
        """

    def prune(now):
        """
        Drop expired history and offline messages, and uids not seen within
        C{SEEN_RETENTION}.

        @return: a Deferred firing with how many messages were dropped.
        """

    def close():
        """
        Release the store (at shutdown).

        @return: a Deferred.
        """


class IBackupSource(Interface):
    """
    A store in a file that can copy itself while the server runs.

    Only the server can make that copy: it holds its database locked (one
    writer thread, no shared-memory index), so another process reading the
    file is refused.  Not part of L{IMessageStore}, because a store in
    memory has no file to copy; check with C{providedBy}.
    """

    def backup():
        """
        Copy the database, consistently, as it is once the operations asked
        for before are done.

        @return: a Deferred firing with the copy (an SQLite database) as a
            binary file open for reading at its start, whose name is already
            removed from its directory: the caller reads it and closes it,
            and closing frees its space, however the reading ends.
        """
