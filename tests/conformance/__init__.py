"""
The Autobahn testsuite against ``twistd realtime``: the spec and its runner
(``python -m tests.conformance.run --help``).
"""
