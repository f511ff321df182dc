// network.c built for Proxy-Wasm ABI 0.1.0 (tests/wasm_network_test.ts runs both builds): the same filter,
// exporting proxy_abi_version_0_1_0 and resuming or closing a direction with ABI 0.1.0's
// proxy_resume_downstream / proxy_resume_upstream / proxy_close_downstream / proxy_close_upstream.
//
// Build: deno task build:plugins (clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry).

#define NETWORK_ABI_0_1_0
#include "network.c"
