#!/usr/bin/env bash
# Third device call: conv2d workgroups of 16 x WG_Y invocations (1, 2, 4) on the GPU.
R=$PWD
res=/tmp/res3
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
s check-f32 $B check --fixtures $F --json
for g in 2 1 4; do
  export BATCHWISE_CONV_GROUP_ROWS=$g
  s photo128-g$g $B bench -m upscale-photo-2x --batch-sizes 8,16,32 --size 128 --count 128 --tile-size 128 --json
  s anime128-g$g $B bench -m upscale-anime-4x --batch-sizes 8,16,32 --size 128 --count 128 --tile-size 128 --json
  s photo256-g$g $B bench -m upscale-photo-2x --batch-sizes 4,8 --size 256 --count 32 --tile-size 256 --json
  s enhance128-g$g $B bench -m enhance-low-light --batch-sizes 8,16 --size 128 --count 128 --tile-size 128 --json
  s prof-photo128-g$g $B bench -m upscale-photo-2x --batch-sizes 16 --size 128 --count 16 --tile-size 128 --profile --json
  s photo128-f16-g$g $B bench -m upscale-photo-2x --batch-sizes 4,8,16 --size 128 --count 128 --tile-size 128 --precision f16 --json
done
unset BATCHWISE_CONV_GROUP_ROWS
s check-f16 $B check --fixtures $F --precision f16 --json
tar czf $OUT/results3.tar.gz -C /tmp res3
