"""Benchmarks of the livewidgets relay against a floor relay and pycrdt-websocket.

Run ``python -m bench --help``; the method and the latest results are in
docs/benchmarks.md.
"""
