#!/usr/bin/env bash
# Second device call: what the first GPU run raised, measured.
R=$PWD
res=/tmp/res2
mkdir -p $res
exec > >(tee $res/call.log) 2>&1
for f in $R/.gpu/gl/*.deb; do dpkg -x $f /; done; ldconfig
tar xzf $R/.gpu/batchwise-gpu.tar.gz -C /tmp
B=/tmp/batchwise-gpu/bin/batchwise
export XDG_CACHE_HOME=$res/cache
[ -n "${XDG_RUNTIME_DIR:-}" ] || { export XDG_RUNTIME_DIR=$(mktemp -d); chmod 700 $XDG_RUNTIME_DIR; }
F=/tmp/batchwise-gpu/fixtures
s() { local name=$1; shift; echo "== $name: $*"; local t0=${EPOCHREALTIME/./}; timeout 60 "$@" > $res/$name.json; echo "-- $name rc=$? $(( (${EPOCHREALTIME/./} - t0) / 1000 )) ms"; }
s tune $B tune --json
s check-f16 $B check --fixtures $F --precision f16 --json
s check-f32 $B check --fixtures $F --model detect-faces,remove-background,classify --json
for p in f32 f16; do
  s rb-$p $B bench -m remove-background --batch-sizes 1,4,16,64 --count 256 --precision $p --profile --json
done
# Steady state: 256 tiles, so batch 64 runs 4 batches (the first run had one).
for p in f32 f16; do
  s photo128-c256-$p $B bench -m upscale-photo-2x --batch-sizes 4,8,16,32,64 --size 128 --count 256 --tile-size 128 --precision $p --json
  s anime128-c256-$p $B bench -m upscale-anime-4x --batch-sizes 4,8,16,32,64 --size 128 --count 256 --tile-size 128 --precision $p --json
done
# float16 slows per item as the batch grows (timestamps): which layers.
for b in 2 16; do
  for p in f16 f32; do
    s prof256-b$b-$p $B bench -m upscale-photo-2x --batch-sizes $b --size 256 --count $b --tile-size 256 --precision $p --profile --json
  done
done
s prof-classify-b64 $B bench -m classify --batch-sizes 64 --count 64 --profile --json
tar czf $OUT/results2.tar.gz -C /tmp res2
