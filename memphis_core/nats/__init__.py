"""The NATS layer of the core: wire framing, the connection session, requests on one inbox.

Nothing here knows the broker behind NATS: this package never imports the layer above it and
names none of its conventions (tests check both), so it is a complete sans-IO NATS client core on
its own. ``memphis_core`` exports the
public names; import them from there.
"""
