#!/usr/bin/env bash
# One device call: the GPU run from the carried bundle, then ncnn-Vulkan on the same GPU.
R=$PWD
res=/tmp/res
mkdir -p $res
exec > >(tee $res/call.log) 2>&1
date -u
for f in $R/.gpu/gl/*.deb; do dpkg -x $f /; done; ldconfig
tar xzf $R/.gpu/batchwise-gpu.tar.gz -C /tmp
B=/tmp/batchwise-gpu
nvidia-smi -L; nvidia-smi --query-gpu=driver_version,clocks.sm,clocks.max.sm --format=csv
ldconfig -p | grep -E 'libvulkan|GLX_nvidia'
ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d 2>&1
$B/bin/batchwise devices 2>&1
if ! $B/bin/batchwise devices --json 2>/dev/null | grep -q '"DiscreteGpu"'; then
  f=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  if [ -e $f ]; then
    export VK_DRIVER_FILES=$f VK_ICD_FILENAMES=$f
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    echo "using $f"; $B/bin/batchwise devices 2>&1
  fi
fi
bash $B/run.sh --out $res/gpu --budget ${BUDGET:-390}
tar czf $OUT/results.tar.gz -C /tmp res
echo "== peers"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site $R/.gpu/whl/*.whl && export PYTHONPATH=/tmp/site
mkdir -p $R/shared/models && ln -sfn $R/.gpu/ncnn $R/shared/models/ncnn
for m in upscale-photo-2x upscale-anime-4x; do
  timeout 40 python3 $R/.gpu/benches/peers/upscale_peers.py --model $m --size 128 --count 64 --skip-cpu
  timeout 40 python3 $R/.gpu/benches/peers/upscale_peers.py --model $m --size 256 --count 16 --skip-cpu
done
date -u
tar czf $OUT/results.tar.gz -C /tmp res
