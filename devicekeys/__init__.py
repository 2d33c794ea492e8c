"""A device's own secrets at run time: sealed to the TPM or kept in 0600 files, and the TLS context built from them.

The desk opens its database key, audit signing key and broker key through this package on every
start, and central builds its broker TLS context with it; the enrolment command line
(``python -m provisioning``) uses it to make and seal a desk's key. It is kept apart from
``provisioning`` so that the products import only the key code they run, never the fleet CA,
its ledger or the enrolment tokens. It imports neither product nor ``provisioning``.
"""
