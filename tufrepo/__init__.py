"""The TUF layer shared by both sides: the signed repository on disk, and what TUF's errors mean.

Like python-tuf's own ``repository`` package, this sits on top of the pure
metadata API: ``repository`` holds the signed-repository skeleton that
central's library repository and the firmware release repository build on;
``failures`` is the one table that turns a python-tuf exception into a reason
code and a plain sentence, which the desk's updater and the firmware agent
each wrap in their own error family. Nothing here knows about libraries or
bundles, and nothing here imports an application package.
"""
