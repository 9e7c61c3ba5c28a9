#!/usr/bin/env bash
# Builds captioner with `--features cuda` (`--device cuda`) on a machine with or without
# a GPU: nvcc, the CUDA headers and the CUDA libraries come from NVIDIA's PyPI wheels,
# installed into a virtual environment and laid out as a CUDA toolkit in .cuda/. The
# driver library (libcuda) ships with the GPU driver, not as a wheel: where the machine
# has none, a stub with the driver API's symbols is built for the linker, and the binary
# loads the real libcuda.so.1 where it runs.
#
#   scripts/build_cuda.sh                 # compute capability 8.0 (A100) by default
#   CUDA_COMPUTE_CAP=90 scripts/build_cuda.sh   # H100/H200
#
# Then: target/cuda/release/captioner caption --device cuda ...
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD/.cuda
# cudarc 0.19 knows CUDA up to 13.4. The CUDA 12 nvcc wheels carry only ptxas; CUDA 13
# splits the compiler over nvcc, nvvm (cicc, libdevice) and crt (headers), all of which
# install into nvidia/cu13 as one toolkit tree.
version=13.4
mkdir -p "$root"
if [ ! -x "$root/venv/bin/python" ]; then
    python3 -m venv "$root/venv"
fi
"$root/venv/bin/pip" install -q \
    "nvidia-cuda-nvcc==$version.*" "nvidia-nvvm==$version.*" "nvidia-cuda-crt==$version.*" \
    "nvidia-cuda-runtime==$version.*" "nvidia-cuda-nvrtc==$version.*" "nvidia-cuda-cccl" \
    "nvidia-cublas==$version.*" "nvidia-curand"
home=$(ls -d "$root"/venv/lib/python3*/site-packages/nvidia/cu13)
# The linker asks for libcublas.so; the wheels carry libcublas.so.13.
mkdir -p "$home/lib64"
for lib in "$home"/lib/lib*.so.*; do
    base=$(basename "$lib")
    ln -sf "$lib" "$home/lib64/${base%%.so.*}.so"
done

# libcuda: the real one where a driver is installed, else a stub for linking only.
if ! ldconfig -p 2>/dev/null | grep -q 'libcuda.so '; then
    sys=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.10/src/driver/sys/mod.rs | head -1)
    if [ -z "$sys" ]; then
        cargo fetch --locked
        sys=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.10/src/driver/sys/mod.rs | head -1)
    fi
    mkdir -p "$home/lib64/stubs"
    grep -oE '^ +fn cu[A-Za-z0-9_]+\(' "$sys" | sed -E 's/^ +fn ([A-Za-z0-9_]+)\(/\1/' | sort -u |
        awk '{ printf "int %s(void) { return 999; }\n", $1 }' >"$home/lib64/stubs/cuda_stub.c"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$home/lib64/stubs/libcuda.so" \
        "$home/lib64/stubs/cuda_stub.c"
fi

export CUDA_HOME=$home CUDA_PATH=$home CUDARC_CUDA_VERSION=13040
export PATH=$home/bin:$PATH
export LD_LIBRARY_PATH=$home/lib64:$home/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-80}
nvcc --version | tail -2
# Its own target folder, so the CPU build in target/release stays as it is.
cargo build --release --locked -p captioner-cli --features cuda --target-dir target/cuda
echo "built target/cuda/release/captioner with CUDA $version for compute capability $CUDA_COMPUTE_CAP;"
echo "at run time it needs the driver's libcuda.so.1 and LD_LIBRARY_PATH=$home/lib"
