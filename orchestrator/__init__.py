"""orch: turn GitHub issues into pull requests by running Claude Code on a fleet of PCs over SSH.

Data flows one way: issue -> task -> plan -> remote job -> result -> PR.
The pure core (classify, schedule, job rendering, stream-json parsing) knows nothing of
SSH, GitHub or the terminal; the edges (transport/, forge/, store, render) are thin.
"""

__version__ = "0.1.0"
