module github.com/loom/plugins/sdk-go

go 1.24

// The SDK is not vendored: scripts/build_sdk_go.sh adds a `replace` to a
// local checkout of github.com/proxy-wasm/proxy-wasm-go-sdk (in a temporary
// copy of this file, passed with -modfile) and builds http_filter.wasm.
require github.com/proxy-wasm/proxy-wasm-go-sdk v0.0.0-00010101000000-000000000000
