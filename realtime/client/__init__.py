"""Clients of the server: the blocking push clients and ``realtime-push`` for
backends, and a Twisted subscriber of the channels protocol for workers."""
