"""``kubetally demo``: the whole pipeline on a simulated GPU cloud, start to finish.

Nothing here is a shortcut around the product: the packaged ``gpu-cloud`` scenario is served over
the real Kubernetes HTTP API by :mod:`kubetally.sim`, the real agent lists and watches it through
the official client while the scenario's clock runs through the hour (a node joins, pods finish,
one is deleted), closed periods go into a real SQLite ledger, the outbox delivers them to a JSON
lines file, and the example price book turns them into the cost table printed at the end.
"""

from kubetally.demo.pipeline import DemoResult, run_demo

__all__ = ["DemoResult", "run_demo"]
