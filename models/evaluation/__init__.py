"""Accuracy and speed evaluation of the face pipeline on a labelled folder.

``metrics`` is pure numpy maths on similarity scores (unit-tested on hand-made
matrices with known answers); ``runner`` does the I/O and timing;
``python -m models.evaluate`` is the command that ties them together.
"""
