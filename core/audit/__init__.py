"""The audit trail's pure rules: how events are chained, how checkpoints are signed, how both are verified.

Like python-tuf's ``api`` package this does no I/O: the appliance and central
both call it, so the device that writes the chain and the auditor who checks
it can never disagree about what "linked" or "signed" means.
"""
