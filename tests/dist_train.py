"""torchrun entry point for tests/test_distributed.py: ``genrefusion.train.main`` with config overrides.

    torchrun --nproc_per_node 2 tests/dist_train.py DATA OUT key=json_value ... [--resume]

Rank 0 writes ``OUT/result.json`` (the returned metrics); every rank checks it got the same result.
"""
import json
import sys

from genrefusion import distributed as dist
from genrefusion.config import Config
from genrefusion.train import main as train_main


def run(argv):
    data, out = argv[0], argv[1]
    overrides = {k: json.loads(v) for k, v in (a.split("=", 1) for a in argv[2:] if "=" in a)}
    result = train_main([data], out, Config().replace(overrides), resume="--resume" in argv, progress=False,
                        write_report=False, device="cpu")
    rank = dist.env_info().rank
    if rank == 0:
        with open(f"{out}/result.json", "w", encoding="utf-8") as fh:
            json.dump(result, fh)
    # every rank returns rank 0's metrics (broadcast): a mismatch would mean ranks diverged
    with open(f"{out}/result.rank{rank}.json", "w", encoding="utf-8") as fh:
        json.dump(result["models"], fh, sort_keys=True)


if __name__ == "__main__":
    run(sys.argv[1:])
