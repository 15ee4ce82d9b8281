"""The Memphis layer of the core: control-plane requests, producers, consumers, schemas.

Built on ``memphis_core.nats`` (one way only). :class:`Client` is the entry point; the option
builders validate every public argument before anything is sent. ``memphis_core`` exports the
public names; import them from there.
"""
