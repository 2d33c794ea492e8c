"""Pinned third-party artifacts (model weights, front-end assets, demo photos).

Everything the system needs from outside comes from a package registry by
exact version and sha256, is verified before use, and is cached so an
air-gapped site can be seeded by copying the cache directory.
"""
