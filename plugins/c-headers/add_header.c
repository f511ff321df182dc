// A Proxy-Wasm plugin in plain C against the ABI (hand-written externs, no
// SDK, no libc): adds `x-c-plugin: clang` to the request and
// `x-c-config: <plugin configuration>` to the response.
//
// Build: clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry \
//   -o add_header.wasm add_header.c
// (`deno task build:plugins` runs exactly this when clang is installed.)

typedef unsigned int u32;
typedef unsigned long size_t;

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

IMPORT(proxy_log) u32 proxy_log(u32 level, const char *msg, size_t len);
IMPORT(proxy_get_buffer_bytes)
u32 proxy_get_buffer_bytes(u32 type, u32 start, u32 max, char **ptr, size_t *size);
IMPORT(proxy_add_header_map_value)
u32 proxy_add_header_map_value(u32 map, const char *k, size_t kl, const char *v, size_t vl);

enum { MAP_REQUEST_HEADERS = 0, MAP_RESPONSE_HEADERS = 2, BUFFER_PLUGIN_CONFIGURATION = 7 };

// The host copies results into memory obtained from this allocator. A bump
// allocator over a static arena is enough: results are small and copied out.
static char arena[64 * 1024];
static size_t arena_used;

EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t n) {
  n = (n + 7) & ~(size_t)7;
  if (arena_used + n > sizeof(arena)) arena_used = 0; // recycle: callers copy immediately
  void *p = arena + arena_used;
  arena_used += n;
  return p;
}

static char config[256];
static size_t config_len;

EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

EXPORT(proxy_on_context_create) void proxy_on_context_create(u32 id, u32 root) {}

EXPORT(proxy_on_vm_start) u32 proxy_on_vm_start(u32 root, u32 size) { return 1; }

EXPORT(proxy_on_configure) u32 proxy_on_configure(u32 root, u32 size) {
  char *p = 0;
  size_t n = 0;
  config_len = 0;
  if (size > 0 && proxy_get_buffer_bytes(BUFFER_PLUGIN_CONFIGURATION, 0, size, &p, &n) == 0 && p) {
    if (n > sizeof(config)) n = sizeof(config);
    for (size_t i = 0; i < n; i++) config[i] = p[i];
    config_len = n;
  }
  static const char msg[] = "c plugin configured";
  proxy_log(2, msg, sizeof(msg) - 1);
  return 1;
}

static const char k_req[] = "x-c-plugin", v_req[] = "clang";
static const char k_res[] = "x-c-config";

EXPORT(proxy_on_request_headers) u32 proxy_on_request_headers(u32 id, u32 n, u32 eos) {
  proxy_add_header_map_value(MAP_REQUEST_HEADERS, k_req, sizeof(k_req) - 1, v_req, sizeof(v_req) - 1);
  return 0;
}

EXPORT(proxy_on_response_headers) u32 proxy_on_response_headers(u32 id, u32 n, u32 eos) {
  proxy_add_header_map_value(MAP_RESPONSE_HEADERS, k_res, sizeof(k_res) - 1, config, config_len);
  return 0;
}

EXPORT(proxy_on_done) u32 proxy_on_done(u32 id) { return 1; }
