#!/bin/sh
# Builds plugins/sdk-cpp/http_filter.wasm with the official Proxy-Wasm C++ SDK
# (https://github.com/proxy-wasm/proxy-wasm-cpp-sdk), unmodified, and clang's
# wasm32-wasi target instead of the SDK's usual Emscripten toolchain.
#
# The SDK is NOT part of this repository: pass a checkout (or a directory with
# its proxy_wasm_api.h, proxy_wasm_common.h, proxy_wasm_enums.h,
# proxy_wasm_externs.h, proxy_wasm_intrinsics.h and proxy_wasm_intrinsics.cc):
#
#   scripts/build_sdk_cpp.sh /path/to/proxy-wasm-cpp-sdk
#
# Debian bookworm packages: clang-14 lld-14 wasi-libc libc++-14-dev-wasm32
# libc++abi-14-dev-wasm32 libclang-rt-14-dev-wasm32 (wabt for wasm-objdump).
set -eu
SDK=${1:?usage: scripts/build_sdk_cpp.sh <proxy-wasm-cpp-sdk dir>}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/plugins/sdk-cpp/http_filter.wasm}
CXX=${CXX:-clang++-14}

# Export exactly the SDK's entry points (proxy_abi_version_*, proxy_on_*,
# proxy_validate_configuration), plus malloc for the host's allocations.
EXPORTS=$(grep -oE '\bproxy_(abi_version_[0-9_]+|on_[a-z_]+|validate_configuration)\(' \
  "$SDK/proxy_wasm_intrinsics.cc" | tr -d '(' | sort -u | sed 's/^/-Wl,--export=/')

# shellcheck disable=SC2086 # EXPORTS is a word list
"$CXX" --target=wasm32-wasi --sysroot=/usr \
  -nostdinc++ -isystem /usr/lib/llvm-14/include/wasm32-wasi/c++/v1 \
  -mexec-model=reactor -O2 -std=c++17 -fno-exceptions \
  -I"$SDK" \
  "$ROOT/plugins/sdk-cpp/http_filter.cc" "$SDK/proxy_wasm_intrinsics.cc" \
  -Wl,--allow-undefined -Wl,--export=malloc $EXPORTS -Wl,--strip-all \
  -o "$OUT"
echo "built $OUT ($(wc -c <"$OUT") bytes)"
