"""
``python -m realtime.workers ...``: how the parent starts a worker.

It is twistd itself, under a name that says what the process is in C{ps};
the parent passes the same twistd and realtime options it was given (minus
C{--workers}), and the sockets and its pipe through L{realtime.workers.handoff}.
"""

from twisted.scripts.twistd import run

if __name__ == "__main__":
    run()
