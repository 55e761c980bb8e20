"""
C{--workers N}: one C{twistd} command, N worker processes on the same ports.

The parent (L{realtime.workers.supervisor}) binds every port the options ask
for and runs no sessions; each worker is a whole node (its own node id, the
shared Redis broker and store) that adopts the parent's listening sockets
(L{realtime.workers.handoff}), so the kernel hands each new connection to
whichever worker accepts it first.
"""
