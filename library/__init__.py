"""The reference library snapshot: written by central, searched by the appliance.

Everything biometric (templates, thumbnails, the search index) lives only
inside a SQLCipher database, so nothing of it is ever on disk unencrypted.
"""
