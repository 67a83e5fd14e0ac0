"""Training-side tools: synthetic pages, offline readers, labeling, and gate training.

Nothing here is imported by the inference path (``cares_integrations.router``, ``textscale``,
``load``); import the submodules you need, e.g. ``cares_integrations.training.synthetic``.
"""
