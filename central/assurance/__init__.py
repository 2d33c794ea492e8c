"""System assurance: the force's own testing of accuracy across demographic groups.

``python -m central.assurance evaluate`` runs the face pipeline over a labelled
set and reports identification error rates per group (``harness``), from a
CSV of group labels per identity (``groups``).
"""
