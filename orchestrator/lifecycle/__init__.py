"""The task lifecycle: an issue becomes a task, the task a remote job, the job a PR.

intake (read and check the issue) -> launch (place, reserve, start) -> follow (the live
log) -> finalize (PR, comment, labels); control (cancel, retry), reconcile and poll (one
cron pass) and dispatch (one issue, by hand) are loops over these steps.
"""
