"""The appliance's own software: signed release bundles, the A/B update agent, systemd units, the image recipe.

firmware may import core, supply, library, models and provisioning, never
appliance or central: it installs the appliance as a wheel into a slot and
runs it as a separate process, so a broken appliance release cannot break
the agent that has to roll it back.
"""
