#!/usr/bin/env bash
# Makes the bundle for the GPU run: a machine with a GPU and no toolchain, registry or network
# unpacks it and runs `bash batchwise-gpu/run.sh` (see BENCHMARKS.md, "On a real GPU").
#
#   bash benches/gpu/bundle.sh [OUT_DIR]        (default: target/gpu-bundle)
#
# OUT_DIR/batchwise-gpu.tar.gz (or .tar.xz when gzip is not small enough) holds batchwise-gpu/:
#   bin/batchwise    the release binary (built here with `cargo build --release --locked`, or the
#                    one BATCHWISE_BIN names), stripped; the built-in models are inside it
#   lib/             the Vulkan loader (libvulkan.so.1) from Debian's libvulkan1 package, used only
#                    where the system has none (apt-get download, or the .deb BATCHWISE_VULKAN_DEB
#                    names), and its copyright file
#   fixtures/        the reference images and onnxruntime outputs `batchwise check` compares with
#   peers/           ncnn on the same GPU, for run.sh's side-by-side step: benches/peers/
#                    upscale_peers.py, the two upscalers' NCNN files (tests/fixtures/ncnn), and pip's
#                    `ncnn` wheel for CPython 3.12 (fetched with `pip download`, or the .whl
#                    BATCHWISE_PEERS_WHEEL names; left out, with a line saying so, where neither works)
#   run.sh, bundle.json (commit, toolchain, the glibc the binary needs, sizes)
# The bundle must stay under 60 MiB; the script fails if it does not.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/gpu-bundle}
limit_bytes=$((60 * 1024 * 1024))
name=batchwise-gpu
stage=$out/$name

rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/lib" "$stage/fixtures" "$out/deb"
if [ -n "${BATCHWISE_BIN:-}" ]; then
    binary=$BATCHWISE_BIN
else
    cargo build --release --locked
    binary=target/release/batchwise
fi
if command -v strip >/dev/null; then
    strip -o "$stage/bin/batchwise" "$binary"
else
    cp "$binary" "$stage/bin/batchwise"
fi

deb=${BATCHWISE_VULKAN_DEB:-}
if [ -z "$deb" ]; then
    (cd "$out/deb" && rm -f libvulkan1_*.deb && apt-get download libvulkan1:amd64)
    deb=$(ls "$out"/deb/libvulkan1_*.deb)
fi
rm -rf "$out/deb/x"
dpkg-deb -x "$deb" "$out/deb/x"
cp -a "$out"/deb/x/usr/lib/x86_64-linux-gnu/libvulkan.so.1* "$stage/lib/"
cp "$out/deb/x/usr/share/doc/libvulkan1/copyright" "$stage/lib/libvulkan1.copyright"

cp tests/fixtures/photo-*.png tests/fixtures/photo-*.f32 tests/fixtures/photo-*.json "$stage/fixtures/"
peers=$stage/peers
mkdir -p "$peers/ncnn/waifu2x-upconv_7-photo" "$peers/ncnn/realesr-animevideov3"
cp benches/peers/upscale_peers.py "$peers/"
cp tests/fixtures/ncnn/waifu2x-upconv_7-photo/scale2.0x_model.* "$peers/ncnn/waifu2x-upconv_7-photo/"
cp tests/fixtures/ncnn/realesr-animevideov3/* "$peers/ncnn/realesr-animevideov3/"
cp tests/fixtures/ncnn/README.md "$peers/ncnn/"
ncnn_version=1.0.20261020
if [ -n "${BATCHWISE_PEERS_WHEEL:-}" ]; then
    cp "$BATCHWISE_PEERS_WHEEL" "$peers/"
elif ! ${PYTHON:-python3} -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
    -d "$peers" "ncnn==$ncnn_version" >/dev/null 2>&1; then
    echo "bundle.sh: no ncnn wheel (pip download failed): the GPU run will skip ncnn" >&2
fi
cp benches/gpu/run.sh "$stage/run.sh"
chmod +x "$stage/run.sh" "$stage/bin/batchwise"

glibc=$(objdump -T "$stage/bin/batchwise" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
cat >"$stage/bundle.json" <<EOF
{
  "commit": "$(git rev-parse HEAD)$(git diff --quiet HEAD -- src shaders assets Cargo.toml Cargo.lock || echo -modified)",
  "made": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "rustc": "$(rustc --version 2>/dev/null || echo unknown)",
  "version": "$("$stage/bin/batchwise" --version)",
  "needs_glibc": "${glibc#GLIBC_}",
  "vulkan_loader": "$(basename "$deb")",
  "binary_bytes": $(stat -c %s "$stage/bin/batchwise")
}
EOF

rm -f "$out/$name.tar.gz" "$out/$name.tar.xz"
tar -C "$out" -czf "$out/$name.tar.gz" "$name"
bundle=$out/$name.tar.gz
if [ "$(stat -c %s "$bundle")" -ge "$limit_bytes" ]; then
    rm -f "$bundle"
    tar -C "$out" -cJf "$out/$name.tar.xz" "$name"
    bundle=$out/$name.tar.xz
fi
size=$(stat -c %s "$bundle")
echo "bundle: $bundle, $((size / 1024)) KiB ($(du -sk "$stage" | cut -f1) KiB unpacked; binary $(($(stat -c %s "$stage/bin/batchwise") / 1024)) KiB; needs glibc ${glibc#GLIBC_})"
if [ "$size" -ge "$limit_bytes" ]; then
    echo "bundle.sh: the bundle is over 60 MiB" >&2
    exit 1
fi
