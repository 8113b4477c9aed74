"""The Ray-free core of the embedding service, in floors that import only downwards:

- ``batches/`` the OpenAI Batch API (files, batches, their runner and routes);
- ``http/`` the FastAPI app: routes, request bodies, auth;
- ``ingress/`` the service: validate, admit, tokenize, late chunking, output, timeouts;
  ``scheduling/`` the encoder's queue, windows and runs, and its memory budget;
- ``model/`` the model's files, card, prepared graph, int8 copy and ONNX runtime;
- the root: errors, settings, pooling, metrics and the parcels requests travel in.

No module imports Ray at import time, so all of it is unit-tested in-process;
``metrics.py`` records through ``ray.serve.metrics`` only inside a replica.
``deployment.py`` wires these pieces into Ray Serve deployments. docs/development.md
draws the picture.
"""
