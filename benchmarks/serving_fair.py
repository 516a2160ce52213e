"""The fair serving benchmark (issue 10): what Steward's serving path costs against like-for-like arms.

Arms, all in one run on one machine, each scoring with the same code (`steward.serving.scoring.score` on the
same registered model; MLflow's own scoring server for the last), the same Ray environment flags, the same
`max_ongoing_requests` and CPU share per model replica, one replica or worker each:

  (a) bare         one bare Serve deployment (benchmarks/baseline_app.py: build)
  (b) passthrough  a router with no logic -> the version deployment: the cost of a hop
  (c) one          Steward, one version, as the operator plans it: the router scores it itself (no hop)
  (d) canary       Steward during a 10 % canary (90/10 split; both versions through their applications)
  (e) captured     Steward with capture at 100 % sampling (the monitoring issue's goal: <= +0.5 ms p50)
  (f) mlflow       `mlflow models serve` of the same version, 1 worker

Single-row `dataframe_records` requests over keep-alive connections from 127.0.0.1 (benchmarks/loadgen.py).
First (a)'s saturation throughput (closed loop); then, in blocks, every arm in a rotating order gets open-loop
load at 50 % and at 80 % of it (latency) and a closed-loop burst (throughput). Warm-up is excluded.
Latency overhead is reported in ms against (a) with bootstrap 95 % intervals, and as ratios; the load
generator's own CPU and the machine's load are recorded, since on 2 cores they compete with the server.

    uv run --frozen python -m benchmarks.serving_fair [--quick] [--ray-env RAY_SERVE_THROUGHPUT_OPTIMIZED=1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.loadgen import Run, Target, closed_loop, open_loop
from benchmarks.server_cpu import ServerCpu, snapshot
from benchmarks.serving_report import MachineLoad, compare, summary, throughput
from benchmarks.serving_stack import ServingStack
from steward.dev.credit_model import FEATURES, applicants

ARMS = ("bare", "passthrough", "one", "canary", "captured", "mlflow")
LEVELS = (50, 80)
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Plan:
    blocks: int
    per_block: int  # open-loop requests per arm, load level and block
    closed_s: float  # closed-loop seconds per arm and block
    warmup_s: float
    saturation_s: float
    concurrency: int = 8


FULL = Plan(blocks=5, per_block=1000, closed_s=6.0, warmup_s=5.0, saturation_s=10.0)
QUICK = Plan(blocks=2, per_block=100, closed_s=2.0, warmup_s=2.0, saturation_s=3.0)


def bodies() -> tuple[bytes, bytes]:
    """One applicant as a single-row request; the capture arm's also carries the sensitive field that its
    capture policy splits off before the model sees the request."""
    record = applicants(1, seed=3)[FEATURES].to_dict(orient="records")[0]
    plain = json.dumps({"dataframe_records": [record]}).encode()
    captured = json.dumps({"dataframe_records": [{**record, "gender": "f"}]}).encode()
    return plain, captured


async def _measure(servers: ServingStack, plan: Plan) -> dict[str, Any]:
    plain, captured = bodies()
    targets = {
        name: Target(arm.url, captured if arm.capture else plain) for name, arm in servers.arms.items()
    }
    arms = tuple(servers.arms)
    for name in arms:  # warm-up, excluded: first calls, lazy imports, connection set-up
        await closed_loop(targets[name], plan.concurrency, plan.warmup_s)
    saturation = await closed_loop(targets["bare"], plan.concurrency, plan.saturation_s)
    bare_rps = throughput(saturation)
    if bare_rps <= 0:
        raise RuntimeError(f"the bare arm answered nothing at saturation: {summary(saturation)}")
    rates = {level: bare_rps * level / 100 for level in LEVELS}
    runs = {name: {**{f"open{lv}": Run() for lv in LEVELS}, "closed": Run()} for name in arms}
    generator = Run()
    # What each arm's requests cost the serving processes in CPU, over its closed-loop runs.
    cpu = {name: ServerCpu() for name in arms}
    for block in range(plan.blocks):
        order = arms[block % len(arms) :] + arms[: block % len(arms)]
        for name in order:
            for level, rate in rates.items():
                expected_s = plan.per_block / rate
                run = await open_loop(targets[name], rate, plan.per_block, 1.5 * expected_s, seed=block)
                runs[name][f"open{level}"].extend(run)
                generator.extend(run)
            before = snapshot()
            run = await closed_loop(targets[name], plan.concurrency, plan.closed_s)
            cpu[name].measure_from(before, run.answered)
            runs[name]["closed"].extend(run)
            generator.extend(run)
        print(f"block {block + 1}/{plan.blocks} done", flush=True)
    return {
        "bare_saturation_rps": bare_rps,
        "open_loop_rates_rps": {f"open{lv}": r for lv, r in rates.items()},
        "runs": runs,
        "server_cpu": cpu,
        "generator_cpu_cores": generator.cpu_s / generator.wall_s,
    }


def report(measured: dict[str, Any]) -> dict[str, Any]:
    runs: dict[str, dict[str, Run]] = measured["runs"]
    bare = runs["bare"]
    cpu: dict[str, ServerCpu] = measured["server_cpu"]
    bare_cpu = cpu["bare"].ms_per_request
    arms: dict[str, Any] = {}
    for name in runs:
        r = runs[name]
        arm: dict[str, Any] = {
            "requests": sum(run.answered for run in r.values()),
            "throughput_rps": throughput(r["closed"]),
            "throughput_ratio": throughput(r["closed"]) / throughput(bare["closed"]),
            "closed": summary(r["closed"]),
            "server_cpu": {**cpu[name].summary(), "ratio": cpu[name].ms_per_request / bare_cpu},
        }
        for lv in LEVELS:
            key = f"open{lv}"
            arm[key] = summary(r[key])
            if name != "bare":
                arm[key]["vs_bare"] = compare(r[key], bare[key])
        arms[name] = arm
    # Capture's own cost: the same Steward deployment without capture is the like-for-like baseline.
    capture_cost = {
        f"open{lv}": compare(runs["captured"][f"open{lv}"], runs["one"][f"open{lv}"]) for lv in LEVELS
    }
    return {
        "bare_saturation_rps": measured["bare_saturation_rps"],
        "open_loop_rates_rps": measured["open_loop_rates_rps"],
        "generator_cpu_cores": measured["generator_cpu_cores"],
        "arms": arms,
        "capture_vs_one": capture_cost,
    }


def measure(
    quick: bool = False,
    ray_env: dict[str, str] | None = None,
    max_ongoing: int = 16,
    blocks: int | None = None,
    per_block: int | None = None,
    router_max_ongoing: int | None = None,
    home: Path | None = None,
) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    plan = replace(plan, blocks=blocks or plan.blocks, per_block=per_block or plan.per_block)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="steward-bench-fair-") as tmp:
        servers = ServingStack(
            home or Path(tmp),
            max_ongoing_requests=max_ongoing,
            ray_env=dict(ray_env or {}),
            router_max_ongoing=router_max_ongoing,
        )
        with servers:
            setup_s = time.monotonic() - started
            load = MachineLoad.start()
            measured = asyncio.run(_measure(servers, plan))
            machine = load.end()
            time.sleep(5)  # the capture writer flushes every 2 s
            rows = servers.captured_rows()
            # Which arms' routers answered stable themselves, and how often they fell back to the handle.
            in_router = {name: servers.in_router_figures(name) for name in servers.in_router_tokens}
    result = report(measured)
    result.update(
        when=datetime.now(UTC).isoformat(timespec="seconds"),
        plan=plan.__dict__,
        ray_env=ray_env or {},
        max_ongoing_requests=max_ongoing,
        router_max_ongoing=router_max_ongoing,
        setup_s=setup_s,
        total_s=time.monotonic() - started,
        machine=machine,
        captured_rows=rows,
        in_router=in_router,
    )
    return result


def headline(r: dict[str, Any]) -> str:
    lines = [
        f"fair serving benchmark: bare saturation {r['bare_saturation_rps']:.1f} req/s; generator "
        f"{r['generator_cpu_cores']:.2f} cores; machine busy {r['machine']['machine_busy_cores']:.2f} cores; "
        f"loadavg {r['machine']['loadavg_start']} -> {r['machine']['loadavg_end']}; "
        f"{r['total_s'] / 60:.1f} min in all",
    ]
    for name, arm in r["arms"].items():
        parts = [f"{name:12s} {arm['requests']:6d} req  thr {arm['throughput_rps']:6.1f}/s "
                 f"({arm['throughput_ratio']:.2f}x)  cpu {arm['server_cpu']['ms_per_request']:5.1f} ms/req "
                 f"({arm['server_cpu']['ratio']:.2f}x)"]  # fmt: skip
        for lv in LEVELS:
            o = arm[f"open{lv}"]
            p = f"  @{lv}% p50 {o.get('p50_ms', float('nan')):6.2f} p99 {o.get('p99_ms', float('nan')):7.2f}"
            diff = o.get("vs_bare", {}).get("p50_overhead")
            if diff:
                p += f" (+{diff['ms']:.2f} [{diff['ci95_low_ms']:.2f}, {diff['ci95_high_ms']:.2f}])"
            if o["not_sent"] or o["abandoned"] or o["errors"]:
                p += f" not_sent {o['not_sent']} abandoned {o['abandoned']} errors {o['errors']}"
            parts.append(p)
        lines.append("".join(parts))
    for lv in LEVELS:
        c = r["capture_vs_one"][f"open{lv}"].get("p50_overhead")
        if c:
            lines.append(
                f"capture @{lv}%: p50 +{c['ms']:.2f} ms [{c['ci95_low_ms']:.2f}, {c['ci95_high_ms']:.2f}] "
                f"vs Steward without capture; {r['captured_rows']} rows captured"
            )
    for name, figures in r["in_router"].items():
        lines.append(f"{name}: in the router {figures}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 blocks of 100 requests per level")
    parser.add_argument("--ray-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--max-ongoing", type=int, default=16)
    parser.add_argument("--blocks", type=int, help="override the plan's number of blocks")
    parser.add_argument("--per-block", type=int, help="override the open-loop requests per level and block")
    parser.add_argument(
        "--router-max-ongoing",
        type=int,
        help="add an arm 'one-router-mor': (c) with this max_ongoing_requests on the router deployment",
    )
    parser.add_argument("--home", type=Path, help="keep the stack's files here")
    parser.add_argument("--out", type=Path, help="also write the result here (JSON)")
    args = parser.parse_args()
    ray_env = dict(item.split("=", 1) for item in args.ray_env)
    result = measure(
        args.quick, ray_env, args.max_ongoing, args.blocks, args.per_block, args.router_max_ongoing, args.home
    )
    text = json.dumps(result, indent=2, default=lambda o: o.__dict__)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    print(headline(result))


if __name__ == "__main__":
    main()
