"""`t2i-feedback demo` on an empty data directory: it serves the log-in page and a demo annotator
can log in with the printed password (no Postgres, Redis or GPU involved)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time

import httpx

from tests.cli.test_cli import EXE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_serves_login_and_annotator_can_log_in(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("T2IF_")} | {"HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([EXE, "demo", "--port", str(port), "--data-dir", str(tmp_path / "demo")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        base = f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
            assert proc.poll() is None, "demo exited early"
        else:
            raise AssertionError("demo did not come up")
        # the banner is printed before the server starts listening
        while not any("annotator1" in ln for ln in lines):
            lines.append(proc.stdout.readline())
        text = "".join(lines)
        assert f"http://127.0.0.1:{port}/" in text
        password = re.search(r"annotator\s+annotator1\s+(\S+)", text).group(1)

        with httpx.Client(base_url=base, follow_redirects=False) as c:
            page = c.get("/login")
            assert page.status_code == 200 and 'name="password"' in page.text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            r = c.post("/login", data={"username": "annotator1", "password": password, "csrf_token": csrf})
            assert r.status_code == 303
            assert c.get("/api/v1/me").json()["role"] == "annotator"
            assert c.get("/readyz").json()["status"] == "ready"
        assert (tmp_path / "demo" / "t2i-feedback.sqlite3").exists()
        assert "request log:" in text  # the README promises a request log; the demo keeps it in a file
        assert "GET /login 200" in (tmp_path / "demo" / "access.log").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_demo_evaluation_asks_nine_raters_when_the_simulated_raters_run():
    from workers.demo import DemoContext, votes_per_pair

    def ctx(world: bool, raters: int) -> DemoContext:
        return DemoContext(settings=None, logins={}, world=world,  # type: ignore[arg-type]
                           raters=[f"oracle{i}" for i in range(raters)])

    assert votes_per_pair(ctx(True, 9)) == 9  # the README's default: the paper's 9 per pair
    assert votes_per_pair(ctx(True, 2)) == 5 and votes_per_pair(ctx(True, 0)) == 3
    assert votes_per_pair(ctx(False, 0)) == 3  # other models: no oracle, the three demo annotators


def test_the_start_line_says_what_is_true_on_a_restart(db, session_factory):
    from app.db.models import Job
    from tests.admin import factories as f
    from workers.demo import startup_line

    url = "http://127.0.0.1:8000/"
    ps = f.prompt_set(db, "demo")
    prompts = [f.prompt(db, ps, f"{n} dogs", "count") for n in ("two", "three")]
    job = Job(kind="generate", state="running", params={"prompt_set_id": ps.id, "images_per_prompt": 4},
              prompt_set_id=ps.id, scope_key="g", progress=0)
    db.add(job)
    db.flush()
    made = f.image(db, prompts[0])
    made.job_id, made.ratings_open = job.id, 1
    db.commit()
    assert startup_line(session_factory, url).splitlines() == [
        f"7 images are being generated; rate them at {url}annotate as they arrive",
        f"1 image waits for labels at {url}annotate"]

    # a restart after the generation finished and every image was labelled: nothing is generated
    job.state = "succeeded"
    made.ratings_open = 0
    db.commit()
    line = startup_line(session_factory, url)
    assert line.startswith("nothing is being generated") and "images are" not in line


def test_one_ctrl_c_stops_the_demo_within_seconds_during_its_first_generation(tmp_path):
    """The first generation takes minutes on a CPU; one Ctrl-C must not wait for it. The job goes back
    to the queue (not cancelled, no attempt used up) and the next start resumes it."""
    import signal
    import sqlite3

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("T2IF_")} | {"HF_HUB_OFFLINE": "1"}
    data = tmp_path / "demo"
    proc = subprocess.Popen([EXE, "demo", "--port", str(port), "--data-dir", str(data), "--simulated-raters", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        state = None
        while time.monotonic() < deadline and state != "running":
            assert proc.poll() is None, "demo exited early"
            time.sleep(1)
            try:
                with sqlite3.connect(data / "t2i-feedback.sqlite3", timeout=5) as conn:
                    row = conn.execute("SELECT state FROM job WHERE kind = 'generate'").fetchone()
            except sqlite3.Error:
                row = None
            state = row[0] if row else None
        assert state == "running", "the first generation did not start"
        time.sleep(3)  # well inside its first batch
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        out, _ = proc.communicate(timeout=30)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert took < 15, f"one Ctrl-C took {took:.0f} s"
    assert "stopped;" in out, out[-2000:]
    with sqlite3.connect(data / "t2i-feedback.sqlite3") as conn:
        state, attempts = conn.execute("SELECT state, attempts FROM job WHERE kind = 'generate'").fetchone()
    assert (state, attempts) == ("queued", 0)


def test_the_terminal_says_when_each_stage_of_the_loop_starts_and_is_ready_with_where_to_look(
        db, session_factory, capsys):
    from app.db.models import Job
    from tests.admin import factories as f
    from workers.demo import Narrator

    url = "http://127.0.0.1:8000/"
    ps = f.prompt_set(db, "demo")
    reward = Job(kind="train_reward", state="running", params={}, prompt_set_id=ps.id, scope_key="r", progress=0)
    db.add(reward)
    db.commit()
    narrator = Narrator(session_factory, url)
    narrator.poll()
    assert f"the reward model is training (job {reward.id}; progress at {url}admin/jobs)" in capsys.readouterr().out

    reward.state, reward.result = "succeeded", {"label_snapshot": {"labels": 400}, "metrics": {"auc": 0.9}}
    tune = Job(kind="finetune", state="succeeded", params={}, prompt_set_id=ps.id, scope_key="t", progress=100,
               result={"steps": 300})
    db.add(tune)
    db.commit()
    narrator.poll()
    out = capsys.readouterr().out
    assert f"reward model ready, trained on 400 labels (held-out AUC 0.90): {url}admin/models" in out
    assert f"fine-tuned generator ready after 300 steps: {url}admin/models" in out
    narrator.poll()
    assert capsys.readouterr().out == ""  # once each
