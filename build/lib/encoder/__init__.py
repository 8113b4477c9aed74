"""Ray-free core of the embedding service: model files, tokenization, ONNX runtime, API.

Nothing in this package imports Ray, so all of it is unit-tested in-process; ``deployment.py``
only wires these pieces into Ray Serve deployments.
"""
