"""Routers: the registry behind :func:`load_router`, and one module per router.

``fixed`` and ``textscale`` need numpy and Pillow only; ``learned`` runs its small network in
numpy (no torch); ``gate`` (the CARES proxy-VLM gate) needs torch, transformers, safetensors and
huggingface-hub, from the ``gate`` extra (``pip install 'cares-integrations[gate]'``).
"""
