"""``python -m dist_rt.serve``: the KServe v2 inference protocol over tensor-parallel ranks.

Modules: :mod:`~dist_rt.serve.server` (CLI, Starlette app, shutdown), :mod:`.protocol`
(JSON and binary tensors), :mod:`.batcher` (dynamic batching), :mod:`.workers` (engine
setup and the ranks' loops), :mod:`.metrics` (Prometheus). Needs the ``serve`` extra
(starlette, uvicorn, prometheus-client).
"""
