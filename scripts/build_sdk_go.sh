#!/bin/sh
# Builds plugins/sdk-go/http_filter.wasm with the official Proxy-Wasm Go SDK
# (https://github.com/proxy-wasm/proxy-wasm-go-sdk), unmodified, and Go >= 1.24
# (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared: a WASI reactor whose
# _initialize runs the Go runtime and init(); the SDK's //go:wasmexport
# functions are the proxy_on_* entry points). No TinyGo.
#
# The SDK is NOT part of this repository: pass a checkout (or a directory with
# its go.mod and the proxywasm, proxywasm/internal and proxywasm/types sources):
#
#   scripts/build_sdk_go.sh /path/to/proxy-wasm-go-sdk
#
# Nothing in the repository is touched: plugins/sdk-go/{go.mod,main.go} and the
# SDK's go.mod + proxywasm/ tree are copied into a temporary directory, where
# go.mod gets `replace github.com/proxy-wasm/proxy-wasm-go-sdk =>
# ./proxy-wasm-go-sdk` (a relative path, so the build info embedded in the
# module, and thus the output, does not depend on where the SDK lives). No
# module proxy is needed (GOPROXY=off).
#
# GO selects the toolchain (default: go on PATH); it must be >= 1.24.
set -eu
SDK=${1:?usage: scripts/build_sdk_go.sh <proxy-wasm-go-sdk dir>}
SDK=$(cd "$SDK" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/plugins/sdk-go/http_filter.wasm}
GO=${GO:-go}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

mkdir -p "$TMP/src/proxy-wasm-go-sdk"
cp "$ROOT/plugins/sdk-go/go.mod" "$ROOT/plugins/sdk-go/main.go" "$TMP/src/"
cp "$SDK/go.mod" "$TMP/src/proxy-wasm-go-sdk/"
cp -R "$SDK/proxywasm" "$TMP/src/proxy-wasm-go-sdk/"
cd "$TMP/src"
"$GO" mod edit -replace github.com/proxy-wasm/proxy-wasm-go-sdk=./proxy-wasm-go-sdk

# -tags proxywasm_timing: the SDK's internal/timing_on.go (debug-level timing
# logs per callback) instead of timing_off.go; see plugins/sdk-go/README.md.
env GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 GOPROXY=off GOTOOLCHAIN=local GOFLAGS=-mod=mod \
  GOWORK=off GOCACHE="$TMP/cache" GOPATH="$TMP/gopath" \
  "$GO" build -buildmode=c-shared -trimpath -buildvcs=false \
  -tags proxywasm_timing -ldflags="-s -w -buildid=" -o "$OUT" .
echo "built $OUT ($(wc -c <"$OUT") bytes)"
