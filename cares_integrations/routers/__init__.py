"""Routers: the registry behind :func:`load_router`, and one module per router.

``fixed`` and ``textscale`` need numpy and Pillow only; ``learned`` runs its small network in
numpy; ``gate`` (the CARES proxy-VLM gate) needs torch and transformers, from the ``gate`` extra.
"""
