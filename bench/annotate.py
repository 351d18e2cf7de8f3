"""Annotation load benchmark: N simulated annotators doing next + submit against a real server.

    python bench/annotate.py [--pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
                             [--sizes 1000,1000000] [--clients 1,8,32,128] [--seconds 10]
                             [--kinds floor,ratings,comparisons] [--gold 0.1] [--ranked]

It creates its own database (dropped at the end), bulk-loads users, images and as many pairs with
generate_series, starts uvicorn on this checkout's code, and prints round trips per second and p50 /
p95 / p99 of each call, for each kind:
- floor:       lease + submit of a rating in plain SQL over psycopg (statements.py's lease rules, no
               caller check, one connection per client, autocommit), no HTTP: what the database
               alone allows;
- ratings:     GET /rating-tasks/next + POST /ratings over HTTP;
- comparisons: GET /comparison-tasks/next + POST /comparison-votes over HTTP.
With --gold RATE, every 100th image and pair is gold and gold is drawn at RATE (the prompt set's
gold_rate, T2IF_COMPARISON_GOLD_RATE). Each HTTP level also prints the share of calls the asyncpg
hot path handed to the FastAPI route (read from the workers' counters, app.metrics), by reason.
Everything (server, Postgres, load generator) shares this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._http import Conn  # noqa: E402

SECRET = "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"


def sh(url: str, sql: str) -> None:
    eng = create_engine(url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(sql))
    eng.dispose()


def reset_pool(url: str) -> None:
    """Forget the previous level's labels and leases: every level starts on a full, fresh pool."""
    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text("TRUNCATE rating, rating_assignment, comparison_vote, comparison_assignment RESTART IDENTITY"))
        c.execute(text("UPDATE image SET ratings_open = ratings_wanted WHERE ratings_open <> ratings_wanted"))
        c.execute(text("UPDATE comparison SET votes_open = votes_wanted WHERE votes_open <> votes_wanted"))
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("VACUUM ANALYZE image"))
        c.execute(text("VACUUM ANALYZE comparison"))
    eng.dispose()


GOLD_EVERY = 100  # with --gold: one image and one pair in this many is gold


def load_pool(url: str, n_images: int, n_users: int, k: int, gold_rate: float = 0.0, ranked: bool = False) -> list[str]:
    """Bulk-load a prompt set, n_images images and n_users annotators with tokens; returns tokens."""
    from app.auth.secrets import hash_password, new_api_token, sha256_hex

    eng = create_engine(url)
    tokens = [new_api_token() for _ in range(n_users)]
    pw = hash_password("bench-password")
    with eng.begin() as c:
        c.execute(
            text(
                "TRUNCATE rating, rating_assignment, comparison_vote, comparison_assignment, comparison, image, "
                "prompt, prompt_set, api_token, user_account RESTART IDENTITY CASCADE"
            )
        )
        c.execute(
            text(
                "INSERT INTO prompt_set (name, description, purpose, labels_per_image, votes_per_comparison, "
                "gold_rate, lease_seconds, auto_chain, source, created_at) VALUES ('bench', '', 'training', "
                ":k, 9, :gold_rate, 600, '{}', '{}', now())"
            ),
            {"k": k, "gold_rate": gold_rate},
        )
        c.execute(
            text(
                "INSERT INTO prompt (prompt_set_id, text, category, attributes, split, position, created_at) "
                "SELECT 1, 'Prompt ' || g, 'count', '{}', 'seen', g, now() FROM generate_series(1, 1000) g"
            )
        )
        t0 = time.perf_counter()
        c.execute(
            text(
                "INSERT INTO image (prompt_id, prompt_set_id, source, sampler, storage_key, content_hash, mime_type, "
                "width, height, byte_size, ratings_wanted, ratings_open, created_at) "
                "SELECT 1 + (g % 1000), 1, 'generated', '{}', 'images/' || g || '.png', md5(g::text) || md5(g::text), "
                "'image/png', 512, 512, 1000, :k, :k, now() FROM generate_series(1, :n) g"
            ),
            {"n": n_images, "k": k},
        )
        load_s = time.perf_counter() - t0
        # as many pairs as images: image g against image g + 1 (a pair wants k votes, like an image)
        c.execute(
            text(
                "INSERT INTO comparison (prompt_id, image_a_id, image_b_id, votes_wanted, votes_open, created_at) "
                "SELECT 1 + (g % 1000), g, 1 + (g % :n), :k, :k, now() FROM generate_series(1, :n) g"
            ),
            {"n": n_images, "k": k},
        )
        if ranked:  # a set a reward model ranked for labelling (label_order 'uncertain'): certainty spread 0-1000
            c.execute(text("UPDATE image SET certainty = (id * 7919) % 1001"))
        if gold_rate > 0:
            c.execute(text("UPDATE image SET gold_label = 'good' WHERE id % :e = 0"), {"e": GOLD_EVERY})
            c.execute(text("UPDATE comparison SET gold_alignment = 'a' WHERE id % :e = 0"), {"e": GOLD_EVERY})
        for i, tok in enumerate(tokens):
            uid = c.execute(
                text(
                    "INSERT INTO user_account (username, display_name, role, password_hash, is_active, pseudonym, "
                    "failed_login_count, created_at) "
                    "VALUES (:u, '', 'annotator', :pw, true, :ps, 0, now()) RETURNING id"
                ),
                {"u": f"bench{i}", "pw": pw, "ps": f"rater-bench{i}"},
            ).scalar_one()
            c.execute(
                text(
                    "INSERT INTO api_token (user_id, name, token_hash, prefix, created_at) "
                    "VALUES (:uid, 'bench', :h, :p, now())"
                ),
                {"uid": uid, "h": sha256_hex(tok), "p": tok[:11]},
            )
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("VACUUM ANALYZE image"))
        c.execute(text("VACUUM ANALYZE comparison"))
    eng.dispose()
    print(f"  loaded {n_images:,} images (and as many pairs) in {load_s:.1f} s ({n_images / load_s:,.0f} rows/s)",
          flush=True)
    return tokens


CALLS = {
    "ratings": ("/api/v1/rating-tasks/next", "/api/v1/ratings",
                lambda aid: {"assignment_id": aid, "label": "good", "duration_ms": 800}),
    "comparisons": ("/api/v1/comparison-tasks/next", "/api/v1/comparison-votes",
                    lambda aid: {"assignment_id": aid, "alignment": "left", "fidelity": "tie", "duration_ms": 800}),
}


def floor_sql() -> tuple[str, str]:
    """The floor's two statements: lease one open image of set 1, store a 'good' on a lease. Plain
    SQL with the lease rules of app/annotation/statements.py and no caller check."""
    from app.annotation import statements
    from app.annotation.leases import RATING

    p = {k: f"%({k})s" for k in ("uid", "now", "exp", "aid")}
    lease = f"""WITH pick AS ({statements.pick(RATING, uid=p["uid"], n="1", where="AND i.prompt_set_id = 1")}
    ), lease AS ({statements.lease(RATING, uid=p["uid"], now=p["now"], expires=p["exp"])}
    ), take AS ({statements.take(RATING)}) SELECT id FROM lease"""
    submit = f"""WITH {statements.claim(RATING, aid=p["aid"], uid=p["uid"], now=p["now"])}
    INSERT INTO rating (assignment_id, image_id, prompt_set_id, annotator_id, label, duration_ms, created_at)
    SELECT a.id, a.item_id, 1, {p["uid"]}, 'good', 800, {p["now"]} FROM a RETURNING id"""
    return lease, submit


async def run_floor(url: str, n_clients: int, seconds: float, max_rounds: int) -> dict[str, list[float]]:
    """Lease + submit in plain SQL over psycopg (prepared, autocommit), no HTTP. (Its Postgres CPU
    column reads near zero: its backends exit before the second reading.)"""
    import psycopg

    lease_sql, submit_sql = floor_sql()

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    lat: dict[str, list[float]] = {"next": [], "submit": []}
    stop = time.perf_counter() + seconds
    counts = {"rounds": 0, "errors": 0, "done": 0}

    async def client(uid: int) -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, prepare_threshold=0) as conn:
            mine = 0
            while time.perf_counter() < stop and mine < max_rounds:
                t0 = time.perf_counter()
                now = datetime.now(UTC)
                cur = await conn.execute(lease_sql, {"uid": uid, "now": now, "exp": now + timedelta(seconds=600)})
                row = await cur.fetchone()
                t1 = time.perf_counter()
                if row is None:
                    counts["done"] += 1
                    return
                cur = await conn.execute(submit_sql, {"now": datetime.now(UTC), "aid": row[0], "uid": uid})
                if await cur.fetchone() is None:
                    counts["errors"] += 1
                    continue
                t2 = time.perf_counter()
                lat["next"].append(t1 - t0)
                lat["submit"].append(t2 - t1)
                counts["rounds"] += 1
                mine += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(uid) for uid in range(1, n_clients + 1)))
    elapsed = time.perf_counter() - started
    lat["_rounds"] = [counts["rounds"] / elapsed]
    lat["_count"] = [counts["rounds"]]
    lat["_errors"] = [counts["errors"]]
    lat["_done"] = [counts["done"]]
    return lat


async def run_level(port: int, tokens: list[str], n_clients: int, seconds: float,
                    max_rounds: int, kind: str = "ratings") -> dict[str, list[float]]:
    next_path, submit_path, answer = CALLS[kind]
    lat: dict[str, list[float]] = {"next": [], "submit": []}
    stop = time.perf_counter() + seconds
    rounds = 0
    errors = 0
    done = 0  # clients that got 204: nothing left that they have not labelled (a fast client at 10^3 images)

    async def client(token: str) -> None:
        nonlocal rounds, errors, done
        conn = Conn("127.0.0.1", port, {"Authorization": f"Bearer {token}"})
        await conn.open()
        mine = 0
        try:
            while time.perf_counter() < stop and mine < max_rounds:
                t0 = time.perf_counter()
                status, task = await conn.request("GET", next_path)
                t1 = time.perf_counter()
                if status == 204:
                    done += 1
                    return
                if status != 200:
                    errors += 1
                    continue
                status, _ = await conn.request("POST", submit_path, answer(task["assignment_id"]))
                t2 = time.perf_counter()
                if status not in (200, 201):
                    errors += 1
                    continue
                lat["next"].append(t1 - t0)
                lat["submit"].append(t2 - t1)
                rounds += 1
                mine += 1
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(tokens[i]) for i in range(n_clients)))
    elapsed = time.perf_counter() - started
    lat["_rounds"] = [rounds / elapsed]
    lat["_count"] = [rounds]
    lat["_errors"] = [errors]
    lat["_done"] = [done]
    return lat


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def cpu_by_group(server_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the server (uvicorn and its workers), Postgres and this process."""
    groups = {"server": 0.0, "postgres": 0.0, "loadgen": _cpu_seconds(os.getpid())}
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(entry))
        if comm.startswith("postgres"):
            groups["postgres"] += _cpu_seconds(int(entry))
    todo = [server_pid]
    while todo:
        pid = todo.pop()
        groups["server"] += _cpu_seconds(pid)
        todo += children.get(pid, [])
    return groups


def worker_pids(metrics_dir: str) -> list[int]:
    """The server's app processes: each wrote DIR/<pid>.ready once it can take SIGUSR1 (bench/_server.py)."""
    return [int(n.split(".")[0]) for n in os.listdir(metrics_dir) if n.endswith(".ready")]


def hot_counts(metrics_dir: str) -> dict[tuple[str, ...], float]:
    """The annotation counters summed over the server's workers (bench/_server.py writes them on SIGUSR1)."""
    import json
    import signal

    pids = worker_pids(metrics_dir)
    for name in os.listdir(metrics_dir):
        if name.endswith(".json"):
            os.remove(os.path.join(metrics_dir, name))
    for pid in pids:
        os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len([n for n in os.listdir(metrics_dir) if n.endswith(".json")]) < len(pids):
        time.sleep(0.05)
    total: dict[tuple[str, ...], float] = {}
    for name in os.listdir(metrics_dir):
        if name.endswith(".json"):
            with open(os.path.join(metrics_dir, name)) as f:
                for *key, value in json.load(f):
                    total[tuple(key)] = total.get(tuple(key), 0.0) + value
    return total


def handed_over(before: dict[tuple[str, ...], float], after: dict[tuple[str, ...], float]) -> str:
    """'x.x% handed over (reason n, ...)' of the calls between two readings."""
    diff = {k: after[k] - before.get(k, 0.0) for k in after if after[k] - before.get(k, 0.0)}
    calls = sum(diff.values())
    route = {k[2]: v for k, v in diff.items() if k[1] == "route"}
    reasons = ", ".join(f"{r} {int(n)}" for r, n in sorted(route.items())) or "none"
    return f"{100 * sum(route.values()) / max(calls, 1):.2f}% of {int(calls)} calls handed over ({reasons})"


def wal_stats(url: str) -> tuple[int, int]:
    """(WAL bytes, full-page images) written so far by the whole Postgres cluster."""
    eng = create_engine(url)
    with eng.connect() as c:
        row = c.execute(text("SELECT wal_bytes, wal_fpi FROM pg_stat_wal")).one()
    eng.dispose()
    return int(row[0]), int(row[1])


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] * 1000


def start_server(url: str, port: int, workers: int, gold_rate: float, metrics_dir: str) -> subprocess.Popen[bytes]:
    for name in os.listdir(metrics_dir):  # the previous server's workers
        os.remove(os.path.join(metrics_dir, name))
    env = dict(os.environ) | {
        "T2IF_DATABASE_URL": url,
        "T2IF_COMPARISON_GOLD_RATE": str(gold_rate),
        "T2IF_BENCH_METRICS_DIR": metrics_dir,
        "T2IF_SECRET_KEY": SECRET,
        "T2IF_ENV": "test",
        "T2IF_LOG_LEVEL": "WARNING",
        "T2IF_DATABASE_POOL_SIZE": "40",
    }
    # uvicorn straight from this checkout (cwd = repo root), so the bench measures the code it lives in;
    # the console script would import whichever copy of the package is installed
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench._server:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        cwd=str(ROOT),
    )
    import httpx

    for _ in range(300):
        try:
            up = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            if up and len(worker_pids(metrics_dir)) >= workers:
                return proc
            time.sleep(0.1)
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--pg", default=os.environ.get("T2IF_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    )
    ap.add_argument("--sizes", default="1000,1000000")
    ap.add_argument("--clients", default="1,8,32,128")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--kinds", default="floor,ratings,comparisons",
                    help="floor (plain SQL, no HTTP), ratings, comparisons: each level runs each kind in turn")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument("--port", type=int, default=8791)
    ap.add_argument("--k", type=int, default=20,
                    help="labels wanted per image; the pool is reset before each level so it never runs dry")
    ap.add_argument("--ranked", action="store_true",
                    help="images ranked by a reward model (Image.certainty spread over 0-1000), as after a "
                         "train_reward job with label_order 'uncertain'")
    ap.add_argument("--gold", type=float, default=0.0,
                    help=f"gold rate (0 to 0.5): every {GOLD_EVERY}th image and pair is gold, drawn at this rate")
    ap.add_argument("--max-rounds", type=int, default=None,
                    help="round trips per client per level (default: the smallest pool size, so that every "
                         "level sees the same annotator histories: one annotator can answer each image once)")
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    max_rounds = args.max_rounds or min(int(s) for s in args.sizes.split(","))
    name = f"t2if_bench_{uuid.uuid4().hex[:8]}"
    import tempfile

    metrics_dir = tempfile.mkdtemp(prefix="t2if-bench-metrics-")
    sh(args.pg, f'CREATE DATABASE "{name}"')
    url = make_url(args.pg).set(database=name).render_as_string(hide_password=False)
    from app.db import migrate

    migrate.upgrade(url)
    print(f"annotate bench: {os.cpu_count()} cores, server workers={args.workers}, {args.seconds:.0f} s per level, "
          f"K={args.k} labels per image, gold rate {args.gold}")
    print(
        f"{'kind':>11} {'items':>9} {'clients':>7} {'rt/s':>8} {'next p50':>9} {'p95':>7} {'p99':>7} "
        f"{'submit p50':>11} {'p95':>7} {'p99':>7} {'errors':>6} {'done':>5}  CPU ms per round trip: "
        f"server / postgres / loadgen; WAL per round trip"
    )
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            tokens = load_pool(url, size, max(clients), k=args.k, gold_rate=args.gold, ranked=args.ranked)
            proc = start_server(url, args.port, args.workers, args.gold, metrics_dir)
            try:
                for n, kind in ((n, kind) for n in clients for kind in args.kinds.split(",")):
                    reset_pool(url)
                    wal0 = wal_stats(url)
                    counts0 = hot_counts(metrics_dir) if kind != "floor" else {}
                    cpu0 = cpu_by_group(proc.pid)
                    lat = asyncio.run(run_floor(url, n, args.seconds, max_rounds) if kind == "floor" else
                                      run_level(args.port, tokens, n, args.seconds, max_rounds, kind))
                    cpu1 = cpu_by_group(proc.pid)
                    counts1 = hot_counts(metrics_dir) if kind != "floor" else {}
                    wal1 = wal_stats(url)
                    rounds = max(1.0, lat["_count"][0])
                    cpu = " / ".join(f"{(cpu1[g] - cpu0[g]) / rounds * 1000:.2f}" for g in cpu0)
                    wal = f"{(wal1[0] - wal0[0]) / rounds / 1024:.1f} KiB, {(wal1[1] - wal0[1]) / rounds:.2f} FPI"
                    print(
                        f"{kind:>11} {size:>9,} {n:>7} {lat['_rounds'][0]:>8.0f} {pct(lat['next'], 50):>8.1f}m "
                        f"{pct(lat['next'], 95):>6.1f}m {pct(lat['next'], 99):>6.1f}m "
                        f"{pct(lat['submit'], 50):>10.1f}m {pct(lat['submit'], 95):>6.1f}m "
                        f"{pct(lat['submit'], 99):>6.1f}m {int(lat['_errors'][0]):>6} {int(lat['_done'][0]):>5}"
                        f"  {cpu}  {wal}" + (f"; {handed_over(counts0, counts1)}" if kind != "floor" else ""),
                        flush=True,
                    )
            finally:
                proc.terminate()
                proc.wait()
    finally:
        sh(args.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        import shutil

        shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
