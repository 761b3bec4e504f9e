"""The applications every server is benchmarked with.

Each module is tiny and framework-idiomatic so that the numbers measure the server, not the app.
Servers import them as ``benchmarks.apps.<module>:<attr>`` with the repository root on sys.path.
"""
