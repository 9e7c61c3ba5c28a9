"""Caption WebDataset shards on a Ray cluster: one Ray task per group of shards, each
running `captioner shards` on its group. The markers make it resumable: after a failure
(a task killed, a node lost), run the same command again and only the shards without a
marker are captioned.

    pip install ray
    python docs/examples/ray_driver.py --captioner target/release/captioner \\
        --out captions/ --groups 16 'data/{00000..01023}.tar' -- --model MODEL --threads 4

Everything after `--` goes to `captioner shards` as it is. `--address` joins a running
cluster (`ray start --head` on one machine, `ray start --address ...` on the others);
without it Ray starts a local one. Exit status: 0 when every group finished, 2 when some
group failed (rerun to finish it).
"""

import argparse
import json
import subprocess
import sys

import ray


@ray.remote(max_retries=0)
def caption_group(captioner: str, shards: list[str], out: str, extra: list[str]) -> dict:
    # --shard 0/1: this task owns its whole group; the driver did the splitting.
    cmd = [captioner, "shards", *shards, "--out", out, "--shard", "0/1", *extra]
    run = subprocess.run(cmd, capture_output=True, text=True)
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    return {"code": run.returncode, "shards": lines, "stderr": run.stderr[-4000:]}


def shard_list(captioner: str, inputs: list[str], out: str) -> list[str]:
    """The sorted shard list, as the captioner expands the inputs (--dry-run, one worker)."""
    cmd = [captioner, "shards", *inputs, "--out", out, "--shard", "0/1", "--dry-run"]
    listed = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("\t")[0] for line in listed.splitlines() if line]


def main() -> int:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="shards: patterns, @lists, folders, files")
    parser.add_argument("--captioner", default="captioner", help="the captioner binary")
    parser.add_argument("--out", required=True, help="the output folder (shared by all nodes)")
    parser.add_argument("--groups", type=int, default=8, help="Ray tasks (default 8)")
    parser.add_argument("--cpus-per-task", type=float, default=1, help="CPUs Ray reserves per task")
    parser.add_argument("--address", help="a running Ray cluster (default: start a local one)")
    args = parser.parse_args(argv)

    shards = shard_list(args.captioner, args.inputs, args.out)
    groups = [g for g in (shards[i :: args.groups] for i in range(args.groups)) if g]
    ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
    task = caption_group.options(num_cpus=args.cpus_per_task)
    results = ray.get([task.remote(args.captioner, g, args.out, extra) for g in groups])
    failed = [r for r in results if r["code"] != 0]
    for r in results:
        for line in r["shards"]:
            print(json.dumps(line))
    for r in failed:
        print(f"a group failed (exit {r['code']}): {r['stderr'].strip()[-500:]}", file=sys.stderr)
    print(f"{len(groups) - len(failed)} of {len(groups)} groups finished", file=sys.stderr)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
