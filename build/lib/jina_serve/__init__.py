"""The Ray side of the service: the ``jina-serve`` command and the launcher behind it.

The Ray-free core is the ``encoder`` package; the Serve application is ``deployment.py``.
"""
