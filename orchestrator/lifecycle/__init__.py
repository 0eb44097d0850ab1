"""The task lifecycle: an issue becomes a task, the task a remote job, the job a PR.

One owner for each step, every entry point a thin loop over them:

    intake.py    read and check an issue (eligible? which specialty?)
    admit.py     an issue, or a queued task, -> a Reservation under the store lock, or
                 Refused with a code (refusals.py): placement, the trigger's rules, the
                 one-live-task rule (the store's), queued -> running
    kinds.py     what a task of each kind runs and delivers (the one place a kind plugs in)
    launch.py    start a reserved task's job; after an attempt without a result (lost, a
                 failed start): queue it again or give up
    follow.py    the live log
    finalize.py  a finished job -> what its kind delivers (a PR) or a failure report
    tell.py      the one way the forge hears of an outcome (comment + labels)
    claims.py    which orch process may act on a running task right now
    forges.py    a run's forge clients (serial, fail fast)

Entry points: dispatch.py (`orch dispatch`), poll.py (`orch poll`, with reconcile.py for
running tasks), control.py (`orch cancel`, `orch retry`); demo/run.py is `orch dispatch`.
"""
