#!/bin/sh
# Builds plugins/sdk-rust/http_filter.wasm with the official Proxy-Wasm Rust SDK
# (crate proxy-wasm, https://github.com/proxy-wasm/proxy-wasm-rust-sdk), unmodified,
# by calling rustc directly (no cargo, no crates.io): the dependencies (log,
# hashbrown and what hashbrown's default features pull in) come from Debian's
# librust-*-dev packages, which install crate sources under
# /usr/share/cargo/registry.
#
# The SDK is NOT part of this repository: pass a checkout of one commit (or a
# directory with its Cargo.toml, build.rs and src/):
#
#   scripts/build_sdk_rust.sh /path/to/proxy-wasm-rust-sdk
#
# Environment:
#   RUSTC   rustc to use (default: rustc); it needs the wasm32-unknown-unknown
#           std of the same version (Debian: libstd-rust-dev-wasm32)
#   CRATES  directory with the crate sources (default: /usr/share/cargo/registry)
#   LINKER  wasm linker (default: wasm-ld-19, else wasm-ld; Debian: lld-19)
#   OUT     output (default: plugins/sdk-rust/http_filter.wasm)
#   HASHBROWN  a hashbrown crate directory to use instead of the one matching the
#           SDK's requirement (e.g. $CRATES/hashbrown-0.16.1 for an SDK asking for 0.15,
#           which Debian does not package); its API must cover the SDK's HashMap use
# See plugins/sdk-rust/README.md for the exact toolchain and SDK files of the committed build.
set -eu
SDK=$(cd "${1:?usage: scripts/build_sdk_rust.sh <proxy-wasm-rust-sdk dir>}" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/plugins/sdk-rust/http_filter.wasm}
RUSTC=${RUSTC:-rustc}
CRATES=${CRATES:-/usr/share/cargo/registry}
if [ -z "${LINKER:-}" ]; then
  if command -v wasm-ld-19 >/dev/null 2>&1; then LINKER=wasm-ld-19; else LINKER=wasm-ld; fi
fi
TARGET=wasm32-unknown-unknown
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
DEPS=$WORK/deps
mkdir -p "$DEPS"

die() {
  echo "build_sdk_rust: $*" >&2
  exit 1
}

# toml_get FILE KEY: a top-level `key = "value"` of the [package] table.
toml_get() {
  awk -v key="$2" '
    /^\[/ { in_pkg = ($0 == "[package]") }
    in_pkg && $1 == key && $2 == "=" { gsub(/"/, "", $3); print $3; exit }' "$1"
}

# dep_version FILE NAME: the version requirement of dependency NAME, written as
# `name = "x.y"`, `name = { version = "x.y", ... }` or a [dependencies.name] table.
dep_version() {
  awk -v name="$2" '
    /^\[/ { in_deps = ($0 == "[dependencies]"); in_tab = ($0 == "[dependencies." name "]"); next }
    in_deps && $1 == name {
      if (match($0, /version *= *"[^"]*"/)) { s = substr($0, RSTART, RLENGTH) } else { s = $0 }
      sub(/^[^"]*"/, "", s); sub(/".*$/, "", s); print s; exit
    }
    in_tab && $1 == "version" { gsub(/"/, "", $3); print $3; exit }' "$1"
}

# crate_dir NAME REQ: the newest $CRATES/NAME-<version> matching a caret
# requirement REQ (same major, or same minor for 0.x).
crate_dir() {
  req=${2#^}
  case $req in
    0.*) prefix=$(echo "$req" | cut -d. -f1-2) ;;
    *) prefix=$(echo "$req" | cut -d. -f1) ;;
  esac
  dir=$(ls -d "$CRATES/$1-$prefix".* "$CRATES/$1-$prefix" 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$dir" ] && [ -d "$dir" ] || die "no $1 $2 in $CRATES (Debian: librust-$1-dev)"
  echo "$dir"
}

# default_features DIR: the crate's `default = [...]` features, one per line.
default_features() {
  awk '
    /^\[/ { in_feat = ($0 == "[features]"); next }
    in_feat && /^default *=/ { collect = 1 }
    collect { line = line $0; if ($0 ~ /\]/) { collect = 0; done = 1 } }
    END {
      sub(/^[^\[]*\[/, "", line); sub(/\].*$/, "", line); gsub(/[" ]/, "", line)
      n = split(line, f, ","); for (i = 1; i <= n; i++) if (f[i] != "") print f[i]
    }' "$1/Cargo.toml"
}

COMMON="--target $TARGET -C opt-level=3 -C codegen-units=1 -C panic=abort -C embed-bitcode=yes
  -L dependency=$DEPS --remap-path-prefix=$CRATES=/registry --remap-path-prefix=$SDK=/proxy-wasm
  --remap-path-prefix=$ROOT=/loom"

# rlib NAME DIR [rustc args...]: compiles crate DIR (its src/lib.rs) into $DEPS.
rlib() {
  name=$1 dir=$2
  shift 2
  edition=$(toml_get "$dir/Cargo.toml" edition)
  echo "  rlib $name ($(basename "$dir"), edition ${edition:-2015})"
  # shellcheck disable=SC2086 # COMMON is a word list
  "$RUSTC" --crate-name "$name" --crate-type rlib --edition "${edition:-2015}" $COMMON \
    --cap-lints allow -o "$DEPS/lib$name.rlib" "$@" "$dir/src/lib.rs"
}

# --- dependencies --------------------------------------------------------------
SDK_TOML=$SDK/Cargo.toml
[ -f "$SDK_TOML" ] && [ -f "$SDK/src/lib.rs" ] || die "$SDK is not a proxy-wasm-rust-sdk checkout"
echo "SDK: proxy-wasm $(toml_get "$SDK_TOML" version) (edition $(toml_get "$SDK_TOML" edition))"

LOG_DIR=$(crate_dir log "$(dep_version "$SDK_TOML" log)")
rlib log "$LOG_DIR"

if [ -n "${HASHBROWN:-}" ]; then
  # Explicit override: another hashbrown than the SDK's Cargo.toml asks for.
  HB_DIR=$(cd "$HASHBROWN" && pwd)
  echo "  hashbrown override: $(basename "$HB_DIR") (Cargo.toml asks for $(dep_version "$SDK_TOML" hashbrown))"
else
  HB_DIR=$(crate_dir hashbrown "$(dep_version "$SDK_TOML" hashbrown)")
fi
HB_ARGS="--cfg 'feature=\"default\"'"
for f in $(default_features "$HB_DIR"); do
  HB_ARGS="$HB_ARGS --cfg 'feature=\"$f\"'"
  case $f in
    default-hasher)
      d=$(crate_dir foldhash "$(dep_version "$HB_DIR/Cargo.toml" foldhash)")
      rlib foldhash "$d"
      HB_ARGS="$HB_ARGS --extern 'foldhash=$DEPS/libfoldhash.rlib'"
      ;;
    allocator-api2)
      d=$(crate_dir allocator-api2 "$(dep_version "$HB_DIR/Cargo.toml" allocator-api2)")
      rlib allocator_api2 "$d" --cfg 'feature="alloc"'
      HB_ARGS="$HB_ARGS --extern 'allocator_api2=$DEPS/liballocator_api2.rlib'"
      ;;
    equivalent)
      d=$(crate_dir equivalent "$(dep_version "$HB_DIR/Cargo.toml" equivalent)")
      rlib equivalent "$d"
      HB_ARGS="$HB_ARGS --extern 'equivalent=$DEPS/libequivalent.rlib'"
      ;;
    inline-more | raw-entry) ;;
    *) die "hashbrown default feature '$f' needs a dependency this script does not build" ;;
  esac
done
eval "rlib hashbrown \"\$HB_DIR\" $HB_ARGS"

# --- the SDK ---------------------------------------------------------------------
# Its build.rs only emits cfgs (e.g. wasi_exec_model_reactor for
# -Z wasi-exec-model=reactor builds): run it as cargo would and pass them on.
SDK_CFGS=""
if [ -f "$SDK/build.rs" ]; then
  "$RUSTC" --edition "$(toml_get "$SDK_TOML" edition)" --crate-name build_script_build \
    -o "$WORK/build-script" "$SDK/build.rs"
  for c in $(cd "$SDK" && CARGO_ENCODED_RUSTFLAGS="" TARGET=$TARGET PROFILE=release \
    CARGO_CFG_TARGET_ARCH=wasm32 CARGO_CFG_TARGET_OS=unknown "$WORK/build-script" |
    sed -n 's/^cargo::\{0,1\}rustc-cfg=//p'); do
    SDK_CFGS="$SDK_CFGS --cfg $c"
  done
fi
echo "  rlib proxy_wasm (cfgs:${SDK_CFGS:- none})"
# shellcheck disable=SC2086 # word lists
"$RUSTC" --crate-name proxy_wasm --crate-type rlib --edition "$(toml_get "$SDK_TOML" edition)" \
  $COMMON $SDK_CFGS --cap-lints allow \
  --extern hashbrown="$DEPS/libhashbrown.rlib" --extern log="$DEPS/liblog.rlib" \
  -o "$DEPS/libproxy_wasm.rlib" "$SDK/src/lib.rs"

# --- the plugin (cdylib, release profile of plugins/sdk-rust/Cargo.toml) ----------
# shellcheck disable=SC2086 # COMMON is a word list
"$RUSTC" --crate-name loom_sdk_rust_filter --crate-type cdylib --edition 2021 $COMMON \
  -C lto=fat -C strip=debuginfo -C linker="$LINKER" \
  --extern proxy_wasm="$DEPS/libproxy_wasm.rlib" --extern log="$DEPS/liblog.rlib" \
  -o "$WORK/http_filter.wasm" "$ROOT/plugins/sdk-rust/src/lib.rs"
# The module name in the name section is the output file name: keep it fixed.
cp "$WORK/http_filter.wasm" "$OUT"
echo "built $OUT ($(wc -c <"$OUT") bytes)"
