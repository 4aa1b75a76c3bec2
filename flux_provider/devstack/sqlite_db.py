"""Connection arguments of the embedded stack's SQLite metadata DB (``[database] sql_alchemy_connect_args``
and ``sql_alchemy_connect_args_async``).

SQLite lets one writer at a time and makes the others wait ``timeout`` seconds (Python's default: 5) before
"database is locked". Airflow's scheduler does not survive that error: on two busy cores, with fifty runs
triggered at once while the dag-processor writes, a 5 s wait was once too short and the scheduler exited.
A minute is what a slow moment needs; a lock held longer than that is a real fault.
"""

CONNECT_ARGS = {"timeout": 60}
ASYNC_CONNECT_ARGS = {"timeout": 60}  # its own dict: Airflow adds check_same_thread to the sync one in place
