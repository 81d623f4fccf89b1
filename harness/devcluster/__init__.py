"""Local Kubernetes for tests and the demo: a real control plane (no kubelets) and a simulated GPU fleet.

Dev and test tooling only; the estimator, planner and operator never import it.
Entry points: `ControlPlane` (controlplane.py), `build_nodes`/`apply_fleet` (fleet.py),
`wait_for` (waiting.py) and `python -m devcluster up|down|status|label` (__main__.py).
See docs/local-cluster.md.
"""
