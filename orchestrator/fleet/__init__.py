"""The hosts: the inventory (inventory.py), one connection per host per run (pool.py),
what a probe finds on a host (facts.py), and the host preflight (bootstrap.py).
"""
