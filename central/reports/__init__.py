"""Oversight reports for the facial recognition board and the public, built from central's audit store.

``aggregation`` turns audit events into counts (pure); ``periods`` fetches a
quarter's or a year's events; ``quarterly`` and ``annual`` assemble the reports;
``charts`` draws them (matplotlib, Agg) and ``pdf`` prints the public report
(WeasyPrint). No report carries a username, custody reference or case id.
"""
