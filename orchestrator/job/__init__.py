"""The remote job: playbook.py renders job.sh, remote.py starts and watches it over any
transport, events.py reads what the agent wrote to job.log.

Import the submodules directly (`from orchestrator.job import remote`); this package
imports nothing itself, so `orch --help` stays instant.
"""
