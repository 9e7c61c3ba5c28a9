#!/bin/bash
# Caption a WebDataset shard set with a SLURM job array: each task is one worker
# (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT) and takes
# every COUNT-th shard of the sorted list. A task that fails or is killed leaves its
# unfinished shards without markers; resubmitting the same script (with any --array
# size) captions only those.
#
#   sbatch docs/examples/slurm_array.sh
#
#SBATCH --job-name=captioner
#SBATCH --array=1-16
#SBATCH --cpus-per-task=16
#SBATCH --mem=8G
#SBATCH --time=04:00:00
#SBATCH --output=logs/captioner-%A_%a.log

set -euo pipefail
SHARDS='/data/laion/{00000..01023}.tar'   # or a folder, or @shards.txt
OUT=/data/laion-captions
MODEL=Salesforce/blip-image-captioning-large   # downloaded once into HF_HOME beforehand

# One JSON line per finished shard on stdout; exit status 2 if a shard failed, which
# SLURM records as the task's failure.
captioner shards "$SHARDS" --out "$OUT" --model "$MODEL" \
    --threads "$SLURM_CPUS_PER_TASK" --precision auto --beams 3 --batch 16
