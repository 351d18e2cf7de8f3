"""One fine-tune job on several GPUs: the worker runs `ml.finetune` under `accelerate launch` with N
processes (`t2i-feedback worker --gpus N`, T2IF_FINETUNE_PROCESSES) instead of in its own process.

The worker writes what the run needs (config, base model, the images' storage keys, resume point) to
`launch.json` in the job's folder and starts the launcher; every process reads that file, streams its
share of the images from storage and trains (accelerate splits each batch's indices between them and
averages the gradients); the main process prints progress lines for the worker to forward and writes
`launch-result.json`. Cancelling, or the worker's death, ends the launcher and its processes."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any

PROGRESS = "T2IF-FINETUNE-PROGRESS "
SPEC, RESULT = "launch.json", "launch-result.json"


def launch_argv(processes: int, spec: Path, port: int, python: str = sys.executable) -> list[str]:
    """`accelerate launch` of this module with `processes` processes on this host. `--multi_gpu` is
    accelerate's data-parallel launcher (torch.distributed.run): one process per CUDA device, NCCL; on
    a host without CUDA the processes train on the CPU with gloo (how the tests run it)."""
    return [python, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--main_process_port", str(port), "--mixed_precision", "no",
            "--dynamo_backend", "no", "-m", "workers.finetune_launch", str(spec)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_spec(out: Path, *, config: Any, base_model: str, storage_url: str, samples: list[tuple[str, str, str, float]],
               pretrain: str | None, resume_from: Path | None, latent_cache: Path | None) -> Path:
    """samples: (storage key, content hash, prompt, reward) per generated image."""
    spec = out / SPEC
    spec.write_text(json.dumps({
        "config": asdict(config), "base_model": base_model, "storage_url": storage_url, "out": str(out),
        "samples": samples, "pretrain": pretrain, "resume_from": str(resume_from) if resume_from else None,
        "latent_cache": str(latent_cache) if latent_cache else None, "seed": config.seed,
    }))
    (out / RESULT).unlink(missing_ok=True)
    return spec


def _die_with_parent() -> None:
    """Linux: the launcher gets SIGTERM when the worker process that started it dies (kill -9 included),
    and passes it on to its training processes: a lost worker leaves no training behind it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def run_launched(spec: Path, processes: int, *, progress: Any, should_cancel: Any,
                 log: Any = None) -> dict[str, Any]:
    """Start the launcher on `spec`, forward its progress, stop it when `should_cancel()` says so
    (raising ml.generation.Cancelled); returns the result the main process wrote. A failure raises
    RuntimeError with the end of the launcher's output."""
    from ml.generation import Cancelled

    argv = launch_argv(processes, spec, free_port())
    if log is not None:
        log("launching: " + " ".join(argv[1:]))
    env = dict(os.environ) | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    tail: deque[str] = deque(maxlen=40)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:  # a thread, so that the loop below can look at should_cancel between lines
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, name="finetune-launch-output", daemon=True).start()
    last: tuple[int, int] = (0, 0)
    cancelled, ended = False, False
    try:
        while not ended:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                line = ""
            if line is None:
                ended = True
            elif line.startswith(PROGRESS):
                step, total, loss = json.loads(line[len(PROGRESS):])
                last = (step, total)
                progress(step, total, loss)
            elif line:
                tail.append(line.rstrip())
            # a run that already ended stays ended: its result counts even if a cancel came late
            if not ended and proc.poll() is None and should_cancel():
                cancelled = True
                break
        if not cancelled:
            proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if cancelled:
        raise Cancelled(*last)
    result = spec.parent / RESULT
    if proc.returncode != 0 or not result.exists():
        raise RuntimeError(f"accelerate launch with {processes} processes exited with {proc.returncode}:\n"
                           + "\n".join(tail))
    return dict(json.loads(result.read_text()))


def main(argv: list[str]) -> None:
    """One process of the launched fine-tune (run by accelerate, not by hand)."""
    import torch

    from app.storage import storage_for
    from ml.finetune import FinetuneConfig, ModelSample, finetune
    from ml.latent_cache import LatentCache
    from workers.handlers.finetune import StoredImage

    spec = json.loads(Path(argv[0]).read_text())
    values = spec["config"]
    values["adam_betas"] = tuple(values["adam_betas"])
    config = FinetuneConfig(**values)
    storage = storage_for(spec["storage_url"])
    samples = [ModelSample(image=StoredImage(storage, key, sha), prompt=prompt, reward=float(reward))
               for key, sha, prompt, reward in spec["samples"]]
    main_process = int(os.environ.get("RANK", "0")) == 0

    def report(step: int, total: int, loss: float) -> None:
        if main_process:
            print(PROGRESS + json.dumps([step, total, loss]), flush=True)

    torch.manual_seed(spec["seed"])  # LoRA's initial weights: the same in every process, as in one
    result = finetune(config, spec["base_model"], samples, spec["out"], pretrain=spec["pretrain"],
                      resume_from=spec["resume_from"], progress=report,
                      latent_cache=LatentCache(spec["latent_cache"]) if spec["latent_cache"] else None)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if main_process:
        Path(spec["out"], RESULT).write_text(json.dumps({
            "checkpoint": str(result.checkpoint), "kind": result.kind, "base_model": result.base_model,
            "steps": result.steps, "curve": result.curve, "warnings": result.warnings, "seconds": result.seconds,
        }))


if __name__ == "__main__":
    main(sys.argv[1:])
