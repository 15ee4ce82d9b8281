"""The NATS layer of the core: wire framing, the connection session, requests on one inbox.

Nothing here knows about Memphis: this package never imports ``memphis_core.memphis`` (a test
checks it), so it is a complete sans-IO NATS client core on its own. ``memphis_core`` exports the
public names; import them from there.
"""
