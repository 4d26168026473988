"""Example DAGs behind the dispatcher: ``hello`` greets ``conf["name"]`` and says who asked
(``conf["requested_by"]``, set only by the dispatcher); ``report`` takes no caller conf."""

from __future__ import annotations

from airflow.sdk import dag, get_current_context, task


@dag(dag_id="hello", schedule=None, catchup=False, tags=["identity"])
def hello():
    @task
    def greet() -> str:
        conf = get_current_context()["dag_run"].conf or {}
        who = (conf.get("requested_by") or {}).get("sub", "nobody")
        message = f"hello {conf.get('name', 'world')}, asked by {who}"
        print(message)
        return message

    greet()


@dag(dag_id="report", schedule=None, catchup=False, tags=["identity"])
def report():
    @task
    def build() -> int:
        return 42

    build()


hello()
report()
