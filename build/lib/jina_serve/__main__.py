"""``python -m jina_serve``: the same as ``jina-serve``."""

from jina_serve.cli import serve_main

serve_main()
