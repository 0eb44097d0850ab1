"""`orch provision`: apply what bootstrap checks, on hosts in parallel, idempotently.

- run.py: the plan (all input checked before a host is touched), the steps on every host
  at once (threads, one fabric connection each), then bootstrap's verdict, recorded;
- steps.py: the table of steps, in order (git, agent, workspace, git-identity);
- agent.py: the agent step (npm or a local file, at the inventory's agent path);
- step.py: what a step is (StepContext in, Outcome out).

SSH goes through transport/fabric.py (why fabric here: docs/provision.md).
"""

from __future__ import annotations

from .run import HostProvision, Plan, StepReport, make_plan, merge_bootstrap, provision, report_json

__all__ = ["HostProvision", "Plan", "StepReport", "make_plan", "merge_bootstrap", "provision",
           "report_json"]
