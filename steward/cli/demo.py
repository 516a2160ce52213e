"""`make demo`: the first path a user walks, on the embedded local stack."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from steward.adapters.errors import NotFound
from steward.adapters.mlflow_registry import MlflowRegistry
from steward.api.manifests import load_manifests
from steward.cli.audit import history
from steward.cli.common import stamped
from steward.cli.demo_monitoring import CHAPTERS as MONITORING_CHAPTERS
from steward.cli.demo_monitoring import run_monitoring
from steward.cli.demo_rollout import promote_and_break
from steward.cli.tables import status_table
from steward.dev.credit_model import FEATURES, SENSITIVE, applicants, register
from steward.dev.stack import STACK_FILE, Stack
from steward.dev.store import LocalStore, StoredObject

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "credit-risk.yaml"
MODEL = "credit-risk"
# In the order they play: rollout (a canary promoted, a broken version rolled back), then, on the monitored
# spec, drift, fairness, quality and retraining (the loop closed).
CHAPTERS = ("rollout", *MONITORING_CHAPTERS)
# What `all` (the default) plays: every chapter.
DEFAULT_CHAPTERS = CHAPTERS


def chapters_from(text: str | None) -> list[str]:
    """`--chapter drift,quality` -> those chapters in playing order; None or "all" -> the default ones."""
    if text is None or text.strip() == "all":
        return list(DEFAULT_CHAPTERS)
    wanted = {c.strip() for c in text.split(",") if c.strip()}
    unknown = sorted(wanted - set(CHAPTERS))
    if unknown or not wanted:
        raise ValueError(f"unknown chapter(s) {unknown or [text]}: choose from {', '.join(CHAPTERS)} or all")
    return [c for c in CHAPTERS if c in wanted]


def ensure_stack(home: Path, console: Console) -> Stack:
    """Reuse a running local stack under `home`, or start one."""
    stack = Stack.load(home) if (home / STACK_FILE).exists() else Stack(home=home)
    with console.status("starting what is not running of MLflow, Ray and the control loop (about 30 s)..."):
        started = stack.up()
    if started:
        console.print(f"started {', '.join(started)}: MLflow {stack.tracking_uri}, Ray {stack.ray_address}")
    else:
        console.print(f"using the local stack under {home}")
    return stack


def ensure_champion(stack: Stack, console: Console) -> str:
    from mlflow import MlflowClient

    registry = MlflowRegistry(stack.tracking_uri)
    try:
        return registry.resolve(MODEL, alias="champion").version
    except NotFound:
        console.print(f"no {MODEL}@champion on this stack yet")
    finally:
        registry.close()
    client = MlflowClient(stack.tracking_uri)
    with console.status("training the credit-scoring model on 4000 synthetic applicants..."):
        version = register(stack.tracking_uri, MODEL)
    client.set_registered_model_alias(MODEL, "champion", version)
    console.print(f"registered {MODEL} version {version} and set alias @champion -> {version}")
    return version


def wait_ready(
    store: LocalStore, namespace: str, name: str, console: Console, timeout_s: float
) -> StoredObject:
    deadline = time.monotonic() + timeout_s
    with console.status("waiting for the model to be Ready...") as spinner:
        while time.monotonic() < deadline:
            obj = store.get(namespace, name)
            if obj is not None:
                ready = next((c for c in obj.status.conditions if c.type.value == "Ready"), None)
                detail = f"{ready.reason.value}: {ready.message}" if ready else "admitted"
                spinner.update(f"[bold]{obj.status.phase.value}[/] {detail}")
                if obj.status.phase.value == "Ready":
                    return obj
                if obj.status.phase.value == "Failed":
                    raise SystemExit(f"{namespace}/{name} failed: {detail}")
            time.sleep(1)
    raise SystemExit(f"{namespace}/{name} was not Ready within {timeout_s:.0f}s; see `steward get md {name}`")


def run_demo(home: Path, console: Console, chapters: list[str] | None = None) -> None:
    chapters = list(DEFAULT_CHAPTERS) if chapters is None else chapters
    started = time.monotonic()
    stack = ensure_stack(home, console)
    ensure_champion(stack, console)
    store = LocalStore(home)
    (md,) = load_manifests(EXAMPLE)
    store.apply(stamped(md, "make demo: first release of the credit model"))
    console.print(f"applied {EXAMPLE.name}: {md.key} follows {MODEL}@champion")
    obj = wait_ready(store, md.metadata.namespace, md.metadata.name, console, timeout_s=300)

    sample = applicants(6, seed=2026)
    records = sample[FEATURES + SENSITIVE].to_dict(orient="records")
    response = httpx.post(obj.status.endpoint or "", json={"dataframe_records": records}, timeout=30)
    response.raise_for_status()
    answer = response.json()
    table = Table(title=f"predictions from {obj.status.endpoint}", header_style="bold")
    for column in ("income", "debt_ratio", "late_payments", "loan_amount", "gender", "default?", "version"):
        table.add_column(column)
    for record, prediction in zip(records, answer["predictions"], strict=True):
        table.add_row(
            f"{record['income']:.0f}",
            f"{record['debt_ratio']:.2f}",
            str(record["late_payments"]),
            f"{record['loan_amount']:.0f}",
            str(record["gender"]),
            "yes" if prediction else "no",
            str(answer["model"]["version"]),
        )
    console.print(table)
    console.print(status_table(store.all()))

    console.print(f"   [dim]start: {time.monotonic() - started:.0f} s[/]")
    if "rollout" in chapters:
        chapter_started = time.monotonic()
        promote_and_break(stack, store, md.metadata.namespace, md.metadata.name, console)
        console.print(f"   [dim]chapter rollout: {time.monotonic() - chapter_started:.0f} s[/]")
    monitoring = [c for c in chapters if c in MONITORING_CHAPTERS]
    if monitoring:
        run_monitoring(stack, store, obj.status.endpoint or "", monitoring, console)
    console.print("\nAudit trail (`steward history credit-risk`):")
    history(md.metadata.name, md.metadata.namespace, None, home)
    console.print(
        f"\nThe stack keeps running: try `uv run steward get md {md.metadata.name}`, or POST MLflow "
        f"scoring JSON (dataframe_records, dataframe_split, instances, inputs) to {obj.status.endpoint}"
    )
    console.print("Stop it with: [bold]make demo-down[/] (or `uv run steward dev down`)")
    console.print(f"[dim]the demo took {time.monotonic() - started:.0f} s[/]")
