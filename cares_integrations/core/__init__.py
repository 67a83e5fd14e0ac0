"""The torch-free core: image intake and resizing, token models, sizing, the router base,
policy, decision, batching and route-and-resize. Nothing here imports torch or a framework."""
