#!/usr/bin/env bash
# Fourth device call: batch 1..64 with the conv2d workgroups of 16 x 2 (the GPU default now), the
# tuned kernels of the earlier calls fixed by environment (direct 3x3, 4 rows) to skip `tune`.
R=$PWD
for f in $R/.gpu/gl/*.deb; do dpkg -x $f /; done; ldconfig
tar xzf $R/.gpu/batchwise-gpu.tar.gz -C /tmp
B=/tmp/batchwise-gpu/bin/batchwise
export XDG_CACHE_HOME=/tmp/cache BATCHWISE_WINOGRAD=off BATCHWISE_CONV_ROWS=4
[ -n "${XDG_RUNTIME_DIR:-}" ] || { export XDG_RUNTIME_DIR=$(mktemp -d); chmod 700 $XDG_RUNTIME_DIR; }
for m in upscale-photo-2x upscale-anime-4x enhance-low-light upscale-anime-2x; do
  for p in f32 f16; do
    t0=${EPOCHREALTIME/./}
    timeout 40 $B bench -m $m --batch-sizes 1,2,4,8,16,32,64 --size 128 --count 256 --tile-size 128 --precision $p --json > $OUT/$m-$p.json
    echo "$m $p rc=$? $(( (${EPOCHREALTIME/./} - t0) / 1000 )) ms"
  done
done
