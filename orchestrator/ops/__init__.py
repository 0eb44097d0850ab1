"""Running orch over time: the cron line and systemd units (cron.py), and the Prometheus
metrics (metrics.py).
"""
