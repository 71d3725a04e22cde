"""Code every service and the gateway share: config, logging, metrics, storage,
the event envelope and catalogue, messaging, errors and validators.

It imports no service and no gateway code."""
