"""Signed publication of the reference library: central as a TUF repository.

``repository`` holds the trust logic that writes and signs metadata;
``describe`` reads a library or delta file to say what it is; ``__main__`` is
the thin command-line tool the RFR team runs (``python -m central.publish``).
"""
