"""Cross-fitting folds trained by extra processes, so that a warm re-run uses every core.

A cold run already keeps two cores busy: the main process trains fold k while a background process fits fold k's
baselines. On a re-run those baselines come from the cache and the second core idles through five fold trainings,
so ``train_folds`` starts ``train.fold_workers`` of these processes (``python -m genrefusion.train RUN FOLDER``,
``train.run_fold_worker``; FOLDER a temporary folder of the main process). Each rebuilds the run's job from the main process's
config, data and models (``FOLDER/job.json``) and ``RUN/split.json``, with the features from the warm cache, then
trains every fold that no other process has claimed: a claim is a file created with ``O_EXCL`` in
``FOLDER/claims``. Folds are seeded by themselves and train on one thread here as in the main process, so the
stages a worker writes into ``RUN/folds/<k>`` are the ones the main process would have trained; the main process
then reads them as finished stages (and trains whatever a failed worker left, resuming it)."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger("genrefusion.train")


def claim(claims: Path, k: int) -> bool:
    """Claim fold ``k`` for this process; False when another process already has."""
    try:
        os.close(os.open(claims / str(k), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


class FoldWorkers:
    """The worker processes of one cross-fitted run and their claims folder."""

    def __init__(self, procs: list, tmp: tempfile.TemporaryDirectory):
        self.procs, self.tmp, self.t0 = procs, tmp, time.perf_counter()

    @property
    def claims(self) -> Path:
        return Path(self.tmp.name) / "claims"

    @classmethod
    def start(cls, command: list[str], run_root: Path, n: int, job: dict) -> FoldWorkers | None:
        """``n`` workers (``command RUN FOLDER`` each) for the run in ``run_root``; ``job``: its ``config`` (a
        dict), ``data`` and ``models``."""
        tmp = tempfile.TemporaryDirectory(prefix="genrefusion-folds-")
        (Path(tmp.name) / "claims").mkdir()
        (Path(tmp.name) / "job.json").write_text(json.dumps(job))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        procs = []
        try:
            for i in range(n):
                with open(Path(tmp.name) / f"stderr{i}.txt", "wb") as errfile:  # a file: a full pipe would block
                    procs.append(subprocess.Popen(
                        [*command, str(run_root), tmp.name], env=env,
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errfile))
        except OSError as err:  # no process: this one trains every fold, as without workers
            workers = cls(procs, tmp)
            workers.stop()
            log.warning("cross-fitting: cannot start a fold worker (%s); training the folds here", err)
            return None
        log.info("cross-fitting: %d fold worker process(es) train folds beside this one", n)
        return cls(procs, tmp)

    def wait(self) -> None:
        """Block until every worker is done; a failed one is only logged (its folds are trained here)."""
        try:
            for i, proc in enumerate(self.procs):
                proc.wait()
                if proc.returncode:
                    err = (Path(self.tmp.name) / f"stderr{i}.txt").read_text(errors="replace").strip().splitlines()
                    log.warning("cross-fitting: a fold worker failed (%s); its unfinished folds are trained here",
                                (err or [f"exit code {proc.returncode}"])[-1][:200])
            log.info("cross-fitting: fold workers done (%.0f s)", time.perf_counter() - self.t0)
        finally:
            self.tmp.cleanup()

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
        self.tmp.cleanup()
