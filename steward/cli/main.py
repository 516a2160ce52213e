"""The `steward` command: for platform teams (crd), model owners (dev, get, demo) and, later, auditors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from steward.api.crd import render_crd_yaml
from steward.api.manifests import ManifestError, load_manifests
from steward.api.model_deployment import API_VERSION, KIND
from steward.cli.audit import audit, history
from steward.cli.common import DEFAULT_HOME, Home, Namespace, console, err, fail, stamped, who_and_why
from steward.cli.feedback import feedback
from steward.cli.monitor import monitor
from steward.cli.retrain import lineage, retrain
from steward.cli.rollout import abort, pause, promote, resume, rollout
from steward.cli.tables import status_table
from steward.dev.store import LocalStore

app = typer.Typer(help="Steward: model lifecycle on Kubernetes and Ray Serve.", no_args_is_help=True)
dev = typer.Typer(help="The embedded local stack: MLflow + Ray + a manifest-folder control loop.")
get = typer.Typer(help="Show resources.")
app.add_typer(dev, name="dev")
app.add_typer(get, name="get")
app.add_typer(audit, name="audit")
app.command("history")(history)
app.command("feedback")(feedback)
app.add_typer(rollout, name="rollout")
app.add_typer(monitor, name="monitor")
app.command("retrain")(retrain)
app.command("lineage")(lineage)
for rollout_command in (promote, abort, pause, resume):
    app.command(rollout_command.__name__)(rollout_command)


@app.command()
def crd(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Print the ModelDeployment CustomResourceDefinition generated from the API models."""
    text = render_crd_yaml()
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        err.print(f"wrote {output}")


@dev.command("up")
def dev_up(
    home: Home = DEFAULT_HOME,
    mlflow_port: Annotated[int, typer.Option(envvar="STEWARD_MLFLOW_PORT")] = 5050,
    ray_dashboard_port: Annotated[int, typer.Option(envvar="STEWARD_RAY_DASHBOARD_PORT")] = 8265,
    ray_gcs_port: Annotated[int, typer.Option(envvar="STEWARD_RAY_GCS_PORT")] = 6380,
    serve_port: Annotated[int, typer.Option(envvar="STEWARD_SERVE_PORT")] = 8000,
    num_cpus: Annotated[int, typer.Option(help="CPUs Ray may schedule on.")] = os.cpu_count() or 2,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve the control loop's Prometheus /metrics on 127.0.0.1:PORT.")
    ] = None,
) -> None:
    """Start MLflow, a Ray head and the control loop, all on 127.0.0.1. On a stack recorded under --home,
    start only the parts that are not running (with the recorded ports, whatever the flags say)."""
    from steward.dev.stack import SERVICES, STACK_FILE, Stack, StackError

    if (home / STACK_FILE).exists():
        stack = Stack.load(home)
    else:
        stack = Stack(
            home=home,
            mlflow_port=mlflow_port,
            ray_dashboard_port=ray_dashboard_port,
            ray_gcs_port=ray_gcs_port,
            serve_port=serve_port,
            num_cpus=num_cpus,
            metrics_port=metrics_port,
        )
    running = {name for name in SERVICES if stack.running(name)}
    with console.status("starting what is not running (about 30 s for MLflow and Ray)..."):
        try:
            started = stack.up()
        except StackError as exc:
            # Stop what this command started; what was running before stays up.
            for name in SERVICES:
                if name not in running:
                    stack.stop(name)
            fail(str(exc))
    for name in SERVICES:
        console.print(f"{name:<10} {'started' if name in started else 'running'} (pid {stack.pids[name]})")
    console.print(f"MLflow     {stack.tracking_uri}")
    console.print(f"Ray        {stack.ray_address} (token in {stack.token_path})")
    console.print(f"Serve      {stack.serve_url}")
    if stack.metrics_port is not None:
        console.print(f"metrics    http://127.0.0.1:{stack.metrics_port}/metrics")
    console.print(f"manifests  {home / 'manifests'}   stop with: steward dev down")


@dev.command("restart-loop")
def dev_restart_loop(home: Home = DEFAULT_HOME) -> None:
    """Stop the control loop over --home (also one started by hand) and start a new one, e.g. after a code
    change; MLflow and Ray keep running."""
    from steward.dev.stack import Stack, StackError

    try:
        stack = Stack.load(home)
        pid = stack.restart_loop()
    except StackError as exc:
        fail(str(exc))
    console.print(f"control loop restarted (pid {pid}); its log: {home / 'logs' / 'loop.log'}")


@dev.command("down")
def dev_down(home: Home = DEFAULT_HOME) -> None:
    """Stop the local stack (its data stays under --home)."""
    from steward.dev.stack import Stack, StackError

    try:
        stack = Stack.load(home)
    except StackError as exc:
        fail(str(exc))
        return
    with console.status("stopping..."):
        try:
            stack.down()
        except StackError as exc:
            fail(str(exc))
    console.print("local stack stopped")


Reason = Annotated[
    str | None, typer.Option("--reason", help="Why: recorded in the audit trail (e.g. a change ticket).")
]


@dev.command("apply")
def dev_apply(
    file: Annotated[Path, typer.Option("--filename", "-f", help="Manifest YAML (may hold several).")],
    reason: Reason = None,
    home: Home = DEFAULT_HOME,
) -> None:
    """Validate manifests and hand them to the local control loop."""
    try:
        manifests = load_manifests(file)
    except ManifestError as exc:
        fail(str(exc))
    store = LocalStore(home)
    for md in manifests:
        path = store.manifest_path(md.metadata.namespace, md.metadata.name)
        before = path.read_text() if path.exists() else None
        store.apply(stamped(md, reason))
        console.print(
            f"modeldeployment.steward.io/{md.metadata.name} {apply_outcome(before, path.read_text())}"
        )


def apply_outcome(before: str | None, after: str) -> str:
    """What `kubectl apply` would say: the manifest is new, changed (spec or who-and-why), or the same."""
    if before is None:
        return "created"
    return "unchanged" if before == after else "configured"


@dev.command("delete")
def dev_delete(
    name: str,
    namespace: Namespace = "default",
    reason: Reason = None,
    home: Home = DEFAULT_HOME,
) -> None:
    """Remove a ModelDeployment: the loop takes its application off Ray Serve."""
    if not LocalStore(home).remove(namespace, name, who_and_why(reason)):
        fail(f"no ModelDeployment {namespace}/{name} in {home / 'manifests'}")
    console.print(f'modeldeployment.steward.io "{name}" deleted')


@get.command("md")
def get_md(
    name: Annotated[str | None, typer.Argument()] = None,
    namespace: Namespace = "default",
    output: Annotated[str, typer.Option("--output", "-o", help="table, yaml or json")] = "table",
    home: Home = DEFAULT_HOME,
) -> None:
    """List ModelDeployments of the local stack, or show one with its conditions."""
    store = LocalStore(home)
    objects = store.all() if name is None else [o for o in [store.get(namespace, name)] if o]
    if name is not None and not objects:
        fail(f"ModelDeployment {namespace}/{name} not found under {home}")
    if output == "table":
        console.print(status_table(objects))
        if name is not None:
            for c in objects[0].status.conditions:
                console.print(f"  {c.type.value}={c.status.value} {c.reason.value}: {c.message}")
    elif output in ("yaml", "json"):
        # As kubectl: one object for a NAME, a List for all of them.
        docs = [{"apiVersion": API_VERSION, "kind": KIND, **o.to_json()} for o in objects]
        doc = docs[0] if name is not None else list_of(docs)
        text = yaml.safe_dump(doc, sort_keys=False) if output == "yaml" else json.dumps(doc, indent=2)
        sys.stdout.write(text + "\n")
    else:
        fail(f"unknown output {output!r}: use table, yaml or json")


def list_of(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}


@app.command()
def demo(
    home: Home = DEFAULT_HOME,
    chapter: Annotated[
        str | None,
        typer.Option(
            "--chapter",
            help="Comma-separated chapters to play after serving the model: rollout, drift, fairness, "
            "quality, retraining (default: all).",
        ),
    ] = None,
) -> None:
    """Train and register a credit-scoring model, serve it locally, send it predictions, roll out new
    versions, watch its live traffic for drift, unfairness and quality, and retrain it on a breach."""
    from steward.cli.demo import chapters_from, run_demo

    try:
        chapters = chapters_from(chapter)
    except ValueError as exc:
        fail(str(exc))
    run_demo(home, console, chapters)


if __name__ == "__main__":
    app()
