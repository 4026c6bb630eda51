"""Team scale: a PostgreSQL job queue (procrastinate) that workers near the boards drain.

- :mod:`.db`       the queue database URL, procrastinate's schema and our two small tables
- :mod:`.tasks`    the procrastinate app and its tasks (one board's run, the nightly schedule)
- :mod:`.execute`  one (suite, board) job through the controller path, resuming a re-delivered run
- :mod:`.worker`   `bench worker`: a procrastinate worker that survives a database restart
- :mod:`.jobs`     `bench submit` / `bench queue`: defer, list (with why a job waits), cancel, retry
- :mod:`.schedule` schedule.yaml: the nightly, as procrastinate periodic tasks

procrastinate and psycopg are imported here only, so `bench run` needs neither.
"""
