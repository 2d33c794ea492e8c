"""The reference library: written by central, searched and updated on the appliance.

Everything biometric (templates, thumbnails, the search index) lives only
inside SQLCipher databases, so nothing of it is ever on disk unencrypted.
``snapshot`` is one version; ``digest`` names its content; ``delta`` carries
the changes to the next version; ``store`` installs versions on a device so a
crash never leaves a broken one; ``composition`` counts who is in it.
docs/library-format.md describes the format.
"""
