"""`orch demo`: an issue becomes a branch on this machine, offline (run.py), with the
stand-in for Claude Code when the real CLI is absent (standin_agent.py).
"""
