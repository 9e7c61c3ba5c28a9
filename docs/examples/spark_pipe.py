"""Caption WebDataset shards with Spark: the shard paths are split into partitions, and
each partition's paths are piped into one `captioner shards @-` process (RDD.pipe writes
a partition's elements to the command's standard input, a line each). A failing command
fails its Spark task, which Spark retries (spark.task.maxFailures); the retry skips the
shards whose markers were written, so only the rest are captioned again. Running the
whole job again after a failed stage does the same.

    spark-submit docs/examples/spark_pipe.py /abs/captioner /abs/out 'MODEL' /abs/shards/*.tar

Paths must be absolute (or on a file system every executor sees at the same path), and
`captioner` must be installed on every executor.
"""

import shlex
import sys

from pyspark.sql import SparkSession


def main() -> None:
    captioner, out, model, *shards = sys.argv[1:]
    spark = SparkSession.builder.appName("captioner").getOrCreate()
    # About 4 shards a task, so that each process loads the model once for several.
    partitions = max(1, len(shards) // 4)
    rdd = spark.sparkContext.parallelize(sorted(shards), partitions)
    # --shard 0/1: each process owns the shards it is given; Spark did the splitting.
    command = [captioner, "shards", "@-", "--out", out, "--shard", "0/1", "--model", model]
    # checkCode: a non-zero exit (a shard failed) fails the task, so that Spark retries it.
    lines = rdd.pipe(shlex.join(command), checkCode=True).collect()
    print("\n".join(lines))
    spark.stop()


if __name__ == "__main__":
    main()
