#!/usr/bin/env bash
# The stage models' reference mode beside each clean option (issue 19; docs/models.md), on the
# setup the release was run beside: a recflow-like world in RecFlow's format, 9 days × 768
# requests, sequences of 20, batch 128, the release's evaluation protocol, 3 seeds; LCRON,
# RankFlow and BCE. Each variant changes one option from the reference; `all-clean` changes
# every one (cascbench's choices before the reference models existed).
#
#   scripts/reference_models.sh [OUT]     # default OUT: /tmp/reference-models
#
# Then: cascbench report --results-dir OUT/runs (one row per method and variant).
set -euo pipefail

out="${1:-/tmp/reference-models}"
mkdir -p "$out"
world=(--world recflow-like --world-option days=9 --world-option requests_per_day=768
       --world-option sequence_length=20)
[[ -d $out/rf ]] || cascbench data export-recflow "${world[@]}" --out "$out/rf"
[[ -d $out/cache ]] || cascbench data prepare recflow --src "$out/rf" --setting recflow-2stage \
    --days all --sequence-length 20 --out "$out/cache"

common=(--dataset recflow --data-dir "$out/cache" --days 2024-01-13..2024-01-21 --methods lcron,rankflow,bce
        --seeds 0-2 --batch-size 128 --eval-protocol release --device cpu
        --results-dir "$out/runs" --quiet --jobs "${JOBS:-2}")
declare -A variants=(
    [reference]=""
    [embedding_init=small]="--set model.embedding_init=small"
    [padding=trained]="--set model.padding=trained"
    [sequence_pooling=masked_mean]="--set model.sequence_pooling=masked_mean"
    [category_level_one=shifted]="--set model.category_level_one=shifted"
    [drop_last=false]="--set train.drop_last=false"
    [all-clean]="--set model.embedding_init=small --set model.padding=trained
                 --set model.sequence_pooling=masked_mean --set model.category_level_one=shifted
                 --set train.drop_last=false"
)
for name in reference embedding_init=small padding=trained sequence_pooling=masked_mean \
            category_level_one=shifted drop_last=false all-clean; do
    echo "== $name" >&2
    # shellcheck disable=SC2086  # the variant's flags are words
    cascbench run "${common[@]}" ${variants[$name]}
done
