"""The OpenAI Batch API: input lines (``lines``), durable files and batches (``store``), the
runner that takes batches to a final state (``runner``) and the HTTP routes (``routes``)."""
