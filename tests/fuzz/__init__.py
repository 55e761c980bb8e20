"""
Property-based fuzzing of every parser of outside input, with hypothesis.

Each target feeds generated input (valid requests, mutations of them, and
the hostile shapes that broke parsers before: nesting 100,000 deep, lone
surrogate escapes, C{NaN}, huge integers, stray bytes) to the real parsing
code on in-memory transports, and checks that every input gets a documented
error or a success, that nothing logs a traceback, and that the same server
object still serves a valid request afterwards.

The short profile (the default, part of the test command) tries about 50
inputs per target; C{REALTIME_FUZZ=long} tries 20,000 per target.
"""
