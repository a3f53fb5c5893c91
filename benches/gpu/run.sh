#!/usr/bin/env bash
# The GPU run: what batchwise measures on a machine with a real GPU, as JSON files in one folder.
#
#   bash run.sh [--reduced] [--out DIR] [--budget SECONDS] [--step-limit SECONDS]
#
# Runs from the bundle `benches/gpu/bundle.sh` makes (bin/batchwise, lib/libvulkan.so.1,
# fixtures/) or from the repository (target/release/batchwise, tests/fixtures; BATCHWISE_BIN
# names another binary). Needs no toolchain, registry or network: bash, coreutils and a Vulkan
# driver. Steps, most important first; a step starts only while the time budget lasts (default
# 330 s, so the whole run stays under 6 minutes) and is stopped when it runs out, or after
# --step-limit (default 90 s: one slow model does not eat the rest); what did not run is listed in
# run.json and said at the end:
#   devices.json, devices.txt, nvidia-smi.txt   the adapters (and the driver's own view)
#   bench-defaults.json                         `batchwise bench` of the first upscaler before tune:
#                                               the kernels a command line gets untuned
#   tune.json                                   `batchwise tune`: the conv kernels fastest on this
#                                               GPU (kept in cache/, used by every later step)
#   check-f32.json                              every built-in against onnxruntime's outputs
#   bench-MODEL-tTILE-PREC.json                 `batchwise bench`, batch 1..64, tile 128 then 256,
#                                               float32 then float16 (256 tiles of 128, 64 of 256:
#                                               batch 64 runs 4 batches at 128, where host and GPU
#                                               work overlap as in a real job)
#   profile-MODEL.json                          the per-layer profile, where `bench --profile` exists
#   peers-MODEL-tTILE.json                      ncnn-Vulkan on the same GPU, one image a call, where
#                                               the bundle has peers/ and python3 has numpy
#   chain-composed.json, chain-steps.json       a chain in tiles composed into one model, and run
#                                               step by step (which pays on a GPU is not known)
#   check-f16.json                              the same check in float16
#   profile-classify-gemm-BLOCK.json            classify's per-layer profile at batch 64 with its 1x1
#                                               convolutions in blocks of BLOCK (channels x q) and
#                                               the default's (BATCHWISE_GEMM_BLOCKING)
#   run.json, run.log                           each step's status and time; everything on stderr
# --reduced: one small model, batch 1 and 2, tile 64, four images (minutes on a CPU's Vulkan).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mode=full
budget=330
step_limit=90
out=""
while [ $# -gt 0 ]; do
    case $1 in
        --reduced) mode=reduced ;;
        --out) out=$2; shift ;;
        --budget) budget=$2; shift ;;
        --step-limit) step_limit=$2; shift ;;
        -h|--help) sed -n '2,/^set /p' "$0" | sed '$d'; exit 0 ;;
        *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
out=${out:-$PWD/gpu-results-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)
log=$out/run.log
start_us=${EPOCHREALTIME/./}
deadline_us=$((start_us + budget * 1000000))

# The bundle's layout, else the repository's.
if [ -x "$here/bin/batchwise" ]; then
    bin=${BATCHWISE_BIN:-$here/bin/batchwise}
    fixtures=$here/fixtures
else
    bin=${BATCHWISE_BIN:-$here/../../target/release/batchwise}
    fixtures=$here/../../tests/fixtures
fi

say() { echo "run.sh: $*" | tee -a "$log" >&2; }

# The Vulkan loader: the system's, else the one carried in lib/ (BATCHWISE_GPU_LOADER=bundled
# uses the carried one anyway).
system_has_vulkan() {
    if ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 '; then return 0; fi
    local d
    for d in /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu /usr/lib64 /usr/lib /usr/local/lib; do
        if [ -e "$d/libvulkan.so.1" ]; then return 0; fi
    done
    return 1
}
loader=system
if [ -e "$here/lib/libvulkan.so.1" ] &&
    { [ "${BATCHWISE_GPU_LOADER:-}" = bundled ] || ! system_has_vulkan; }; then
    export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    loader=bundled
elif ! system_has_vulkan; then
    loader=none
fi

# NVIDIA's Vulkan driver without its manifest (containers started without the graphics
# capability have the library but not the JSON): a manifest naming the library.
has_icd() {
    local d
    for d in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
        if ls "$d"/*nvidia* >/dev/null 2>&1; then return 0; fi
    done
    return 1
}
icd=system
if [ -z "${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" ] && ! has_icd &&
    ldconfig -p 2>/dev/null | grep -q 'libGLX_nvidia\.so\.0 '; then
    printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "libGLX_nvidia.so.0", "api_version": "1.3.0"}}\n' \
        >"$out/nvidia_icd.json"
    export VK_ICD_FILENAMES=$out/nvidia_icd.json VK_DRIVER_FILES=$out/nvidia_icd.json
    icd=written
fi

# Autotune's cache goes with the results (its choice is part of the record).
export XDG_CACHE_HOME=$out/cache
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "$XDG_RUNTIME_DIR" ]; then
    XDG_RUNTIME_DIR=$(mktemp -d) && chmod 700 "$XDG_RUNTIME_DIR" && export XDG_RUNTIME_DIR
fi

if ! version=$("$bin" --version 2>>"$log"); then
    say "$bin does not run here (see $log; the bundle's bundle.json names the glibc it needs)"
    exit 1
fi
say "$version, $mode mode, budget ${budget} s, Vulkan loader: $loader, NVIDIA manifest: $icd -> $out"

steps=()
skipped=()
failed=0
has_profile=false
if "$bin" bench --help 2>>"$log" | grep -q -- '--profile'; then has_profile=true; fi

json_str() {
    local s=${1//\\/\\\\}
    s=${s//\"/\\\"}
    printf '"%s"' "${s//$'\n'/ }"
}

write_record() {
    local now_us=${EPOCHREALTIME/./} list="" s
    for s in "${steps[@]}"; do list+="${list:+,}"$'\n    '"$s"; done
    local skip="" k
    for k in "${skipped[@]}"; do skip+="${skip:+, }$(json_str "$k")"; done
    {
        printf '{\n  "mode": %s,\n  "version": %s,\n' "$(json_str "$mode")" "$(json_str "$version")"
        printf '  "loader": %s,\n  "icd": %s,\n  "profile": %s,\n' "$(json_str "$loader")" \
            "$(json_str "$icd")" "$has_profile"
        printf '  "budget_secs": %s,\n  "step_limit_secs": %s,\n  "elapsed_secs": %s,\n' \
            "$budget" "$step_limit" \
            "$(((now_us - start_us) / 1000000))"
        printf '  "failed_steps": %s,\n  "skipped_for_time": [%s],\n' "$failed" "$skip"
        printf '  "steps": [%s\n  ]\n}\n' "$list"
    } >"$out/run.json.tmp" && mv "$out/run.json.tmp" "$out/run.json"
}

# step NAME FILE COMMAND...: runs COMMAND with its stdout in FILE while the budget lasts.
# A command that exits non-zero keeps what it printed (a failed check still prints its rows).
step() {
    local name=$1 file=$2
    shift 2
    local now_us=${EPOCHREALTIME/./}
    local left=$(((deadline_us - now_us) / 1000000))
    if [ "$left" -lt 5 ]; then
        skipped+=("$name")
        write_record
        return
    fi
    echo "== $name: $*" >>"$log"
    [ "$left" -le "$step_limit" ] || left=$step_limit
    timeout --kill-after=5 "$left" "$@" >"$out/$file" 2>>"$log"
    local rc=$? status=ok
    local secs=$(((${EPOCHREALTIME/./} - now_us) / 1000))
    case $rc in
        0) ;;
        124 | 137) status=out_of_time ;;
        *) status=failed ;;
    esac
    [ "$status" = ok ] || failed=$((failed + 1))
    local took written
    took=$((secs / 1000)).$(printf %03d $((secs % 1000)))
    if [ -s "$out/$file" ]; then written=$(json_str "$file"); else rm -f "$out/$file" && written=null; fi
    say "$name: $status (exit $rc) in $took s"
    steps+=("{\"name\": $(json_str "$name"), \"file\": $written, \"status\": \"$status\", \"exit\": $rc, \"secs\": $took}")
    write_record
}

# The built-ins, most telling first: the two upscalers the goals are about, the other image
# models, the fixed-input ones (their input size is fixed: one bench per precision), and last the
# denoise levels (the same network as upscale-photo-2x with other weights).
tiled=(upscale-photo-2x upscale-anime-4x upscale-anime-2x enhance-low-light)
fixed=(classify embed remove-background detect-faces)
same_net=(upscale-photo-2x-denoise0 upscale-photo-2x-denoise1 upscale-photo-2x-denoise2
    upscale-photo-2x-denoise3)
# Built-ins this list does not know yet run last, at tile 128.
known=" ${tiled[*]} ${fixed[*]} ${same_net[*]} "
for id in $("$bin" models --json 2>>"$log" | grep -o '"id": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/'); do
    case $known in *" $id "*) ;; *) same_net+=("$id") ;; esac
done

batches=1,2,4,8,16,32,64
tiles=(128 256)
count=64
profile_batch=16
default_batch=16
if [ "$mode" = reduced ]; then
    tiled=(enhance-low-light) fixed=() same_net=() batches=1,2 tiles=(64) count=4 profile_batch=1
    default_batch=2
fi

bench() { # MODEL TILE PRECISION
    local n=$count
    if [ "$mode" = full ] && [ "$2" -le 128 ]; then n=$((count * 4)); fi
    step "bench $1 tile $2 $3" "bench-$1-t$2-$3.json" "$bin" bench -m "$1" --batch-sizes "$batches" \
        --size "$2" --count "$n" --tile-size "$2" --precision "$3" --json
}

# ncnn-Vulkan on the same GPU and images, one image a call as its upscalers run (the bundle's
# peers/: benches/peers/upscale_peers.py, the NCNN files and pip's ncnn wheel, unpacked here
# without pip).
peers() {
    local wheel py=${PYTHON:-python3}
    wheel=$(ls "$here"/peers/ncnn-*.whl 2>/dev/null | head -1)
    if [ -z "$wheel" ] || ! "$py" -c 'import numpy' 2>>"$log"; then
        say "no ncnn wheel in the bundle or no python3 with numpy: ncnn is not measured"
        return
    fi
    local tag
    tag=$("$py" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
    case $wheel in
        *-"$tag"-*) ;;
        *) say "the bundle's ncnn wheel is not for this python3 ($tag): ncnn is not measured"; return ;;
    esac
    local site=$out/peers-site
    "$py" -m zipfile -e "$wheel" "$site" 2>>"$log" || { say "could not unpack $wheel"; return; }
    local m tile n
    for m in upscale-photo-2x upscale-anime-4x; do
        for tile in "${tiles[@]}"; do
            n=$((tile <= 128 ? 64 : 16))
            step "peers $m tile $tile" "peers-$m-t$tile.json" env PYTHONPATH="$site" "$py" \
                "$here/peers/upscale_peers.py" --model "$m" --size "$tile" --count "$n" --skip-cpu \
                --ncnn-dir "$here/peers/ncnn" --json
        done
    done
    rm -rf "$site"
}

step "devices" devices.json "$bin" devices --json
"$bin" devices >"$out/devices.txt" 2>>"$log"
if command -v nvidia-smi >/dev/null; then nvidia-smi >"$out/nvidia-smi.txt" 2>&1; fi
if ! grep -q '"device_type": "\(DiscreteGpu\|IntegratedGpu\)"' "$out/devices.json" 2>/dev/null; then
    say "no GPU adapter in devices.json: the figures below are of a CPU or no device"
fi
# What a command line that never ran `tune` gets: the adapter's default kernels (the cache is
# still empty), the first upscaler at one batch size, to set beside its tuned bench below.
step "bench defaults" bench-defaults.json "$bin" bench -m "${tiled[0]}" --batch-sizes "$default_batch" \
    --size "${tiles[0]}" --count "$count" --tile-size "${tiles[0]}" --json
# The kernels this GPU runs fastest, measured once; every later step reads them from the cache
# (XDG_CACHE_HOME above).
if "$bin" tune --help >/dev/null 2>&1; then
    step "tune" tune.json "$bin" tune --json
else
    say "this batchwise has no tune: the default kernels"
fi

check_models=$(IFS=,; echo "${tiled[*]}${fixed[*]:+,${fixed[*]}}${same_net[*]:+,${same_net[*]}}")
[ "$mode" = full ] && check_models=""
step "check f32" check-f32.json "$bin" check --fixtures "$fixtures" --json \
    ${check_models:+--model "$check_models"}
for precision in f32 f16; do
    for m in "${tiled[@]}"; do bench "$m" "${tiles[0]}" "$precision"; done
    for m in "${fixed[@]}"; do
        step "bench $m $precision" "bench-$m-$precision.json" "$bin" bench -m "$m" \
            --batch-sizes "$batches" --count "$count" --precision "$precision" --json
    done
done
if $has_profile; then
    for m in "${tiled[@]}" "${fixed[@]}"; do
        step "profile $m" "profile-$m.json" "$bin" bench -m "$m" --batch-sizes "$profile_batch" \
            --size "${tiles[0]}" --count "$profile_batch" --tile-size "${tiles[0]}" --profile --json
    done
else
    say "this batchwise has no bench --profile: no per-layer profile"
fi
if [ "$mode" = full ] && [ -d "$here/peers" ]; then peers; fi
# A chain in tiles, composed (one submit, the intermediate on the GPU) and step by step (each step
# on its own tiles, the intermediate handed on through host memory): job/stepwise.rs chooses by
# the work alone, and on a GPU the hand-off's host work may weigh more.
chain_size=512 chain_tile=128 chain_batches=4,16 chain_count=16
if [ "$mode" = reduced ]; then chain_size=32 chain_tile=16 chain_batches=1 chain_count=2; fi
for how in composed steps; do
    step "chain $how" "chain-$how.json" env BATCHWISE_CHAIN="$how" "$bin" bench \
        -m enhance-low-light,upscale-photo-2x --batch-sizes "$chain_batches" --size "$chain_size" \
        --count "$chain_count" --tile-size "$chain_tile" --json
done
step "check f16" check-f16.json "$bin" check --fixtures "$fixtures" --precision f16 --json \
    ${check_models:+--model "$check_models"}
# 1x1 convolutions (gemm.wgsl) in other register blocks than the ones chosen on lavapipe (24-32
# channels x 8 q): on a GPU a small map's product gets few invocations (classify's 1152 -> 192
# on 7x7 maps at batch 64: 2352 of 256 accumulators each). The per-layer profile for each.
gemm_models=(classify) gemm_blocks=(default 16x8 8x8 8x4 4x4) gemm_batch=64
if [ "$mode" = reduced ]; then gemm_models=(enhance-low-light) gemm_blocks=(8x4) gemm_batch=1; fi
if $has_profile; then
    for b in "${gemm_blocks[@]}"; do
        for m in "${gemm_models[@]}"; do
            step "gemm $b $m" "profile-$m-gemm-$b.json" env BATCHWISE_GEMM_BLOCKING="${b#default}" \
                "$bin" bench -m "$m" --batch-sizes "$gemm_batch" --count "$gemm_batch" \
                --size "${tiles[0]}" --tile-size "${tiles[0]}" --profile --json
        done
    done
fi
for tile in "${tiles[@]:1}"; do
    for precision in f32 f16; do
        for m in "${tiled[@]}"; do bench "$m" "$tile" "$precision"; done
    done
done
for precision in f32 f16; do
    for m in "${same_net[@]}"; do bench "$m" "${tiles[0]}" "$precision"; done
done

write_record
elapsed=$(((${EPOCHREALTIME/./} - start_us) / 1000000))
if [ ${#skipped[@]} -gt 0 ]; then
    say "the time budget ran out: ${#skipped[@]} steps did not run: $(printf '%s; ' "${skipped[@]}")"
fi
say "done in ${elapsed} s: ${#steps[@]} steps, $failed failed or out of time; results in $out"
[ "$failed" -eq 0 ]
