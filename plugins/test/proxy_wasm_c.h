// The prelude every C test plugin shares (Proxy-Wasm ABI 0.2.1, no libc):
// types, the ABI's host functions and constants, memcpy/memset, the arena
// allocator the host copies results into, string helpers and a text builder.
//
// One plugin is one translation unit, so the few non-static definitions here
// (memcpy, memset, proxy_on_memory_allocate) are defined once per module.
// Host functions a plugin does not call do not become imports, and helpers it
// does not use are dropped by the linker, so including all of it costs nothing.
//
// Before including it a plugin may set:
//   PW_ARENA_SIZE  bytes of the allocator's arena (default 64 KiB): the largest
//                  result the host hands over at once (a body, a file) must fit
//   PW_OUT_SIZE    bytes of the text builder `out` (default 4096)
//
// Build: deno task build:plugins (clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry),
// which compiles each plugins/test/*.c on its own; this header is found beside it.

#ifndef PROXY_WASM_C_H
#define PROXY_WASM_C_H

#ifndef PW_ARENA_SIZE
#define PW_ARENA_SIZE (64 * 1024)
#endif
#ifndef PW_OUT_SIZE
#define PW_OUT_SIZE 4096
#endif

typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned long long u64;
typedef long long i64;
typedef unsigned long size_t;

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define WASI(name) __attribute__((import_module("wasi_snapshot_preview1"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

// ABI constants (the values of the spec's enums).
enum {
  // Header maps.
  MAP_REQUEST_HEADERS = 0,
  MAP_RESPONSE_HEADERS = 2,
  MAP_GRPC_INITIAL = 4,
  MAP_GRPC_TRAILING = 5,
  MAP_HTTP_CALL_RESPONSE_HEADERS = 6,
  // Buffers.
  BUFFER_REQUEST_BODY = 0,
  BUFFER_RESPONSE_BODY = 1,
  BUFFER_DOWNSTREAM_DATA = 2,
  BUFFER_UPSTREAM_DATA = 3,
  BUFFER_HTTP_CALL_RESPONSE_BODY = 4,
  BUFFER_GRPC_RECEIVE = 5,
  BUFFER_VM_CONFIGURATION = 6,
  BUFFER_PLUGIN_CONFIGURATION = 7,
  BUFFER_CALL_DATA = 8,
  // Streams (proxy_continue_stream, proxy_close_stream).
  STREAM_DOWNSTREAM = 2,
  // Metric types.
  METRIC_COUNTER = 0,
  // Callback results.
  CONTINUE = 0,
  PAUSE = 1,
};

// Host functions (env).
IMPORT(proxy_log) u32 proxy_log(u32 level, const char *p, size_t n);
IMPORT(proxy_get_buffer_bytes) u32 proxy_get_buffer_bytes(u32 type, u32 start, u32 max, char **ptr, size_t *size);
IMPORT(proxy_set_buffer_bytes) u32 proxy_set_buffer_bytes(u32 type, u32 start, u32 len, const char *p, size_t n);
IMPORT(proxy_get_buffer_status) u32 proxy_get_buffer_status(u32 type, size_t *len, u32 *flags);
IMPORT(proxy_get_header_map_value)
u32 proxy_get_header_map_value(u32 map, const char *k, size_t kl, char **vp, size_t *vl);
IMPORT(proxy_get_header_map_pairs) u32 proxy_get_header_map_pairs(u32 map, char **ptr, size_t *size);
IMPORT(proxy_add_header_map_value)
u32 proxy_add_header_map_value(u32 map, const char *k, size_t kl, const char *v, size_t vl);
IMPORT(proxy_replace_header_map_value)
u32 proxy_replace_header_map_value(u32 map, const char *k, size_t kl, const char *v, size_t vl);
IMPORT(proxy_set_effective_context) u32 proxy_set_effective_context(u32 ctx);
IMPORT(proxy_continue_stream) u32 proxy_continue_stream(u32 type);
IMPORT(proxy_close_stream) u32 proxy_close_stream(u32 type);
IMPORT(proxy_send_local_response)
u32 proxy_send_local_response(u32 status, const char *d, size_t dl, const char *b, size_t bl, const char *h, size_t hl,
                              u32 grpc);
IMPORT(proxy_http_call)
u32 proxy_http_call(const char *up, size_t upl, const char *h, size_t hl, const char *b, size_t bl, const char *t,
                    size_t tl, u32 timeout, u32 *token);
IMPORT(proxy_grpc_call)
u32 proxy_grpc_call(const char *up, size_t upl, const char *svc, size_t svcl, const char *m, size_t ml,
                    const char *md, size_t mdl, const char *msg, size_t msgl, u32 timeout, u32 *token);
IMPORT(proxy_grpc_stream)
u32 proxy_grpc_stream(const char *up, size_t upl, const char *svc, size_t svcl, const char *m, size_t ml,
                      const char *md, size_t mdl, u32 *token);
IMPORT(proxy_grpc_send) u32 proxy_grpc_send(u32 token, const char *msg, size_t len, u32 end);
IMPORT(proxy_grpc_cancel) u32 proxy_grpc_cancel(u32 token);
IMPORT(proxy_grpc_close) u32 proxy_grpc_close(u32 token);
IMPORT(proxy_get_status) u32 proxy_get_status(u32 *code, char **ptr, size_t *size);
IMPORT(proxy_get_current_time_nanoseconds) u32 proxy_get_current_time_nanoseconds(u64 *ns);
IMPORT(proxy_set_tick_period_milliseconds) u32 proxy_set_tick_period_milliseconds(u32 ms);
IMPORT(proxy_call_foreign_function)
u32 proxy_call_foreign_function(const char *n, size_t nl, const char *a, size_t al, char **r, size_t *rl);
IMPORT(proxy_get_property) u32 proxy_get_property(const char *p, size_t pl, char **v, size_t *vl);
IMPORT(proxy_define_metric) u32 proxy_define_metric(u32 type, const char *n, size_t nl, u32 *id);
IMPORT(proxy_increment_metric) u32 proxy_increment_metric(u32 id, i64 delta);
IMPORT(proxy_record_metric) u32 proxy_record_metric(u32 id, u64 v);
IMPORT(proxy_set_shared_data) u32 proxy_set_shared_data(const char *k, size_t kl, const char *v, size_t vl, u32 cas);
IMPORT(proxy_get_shared_data) u32 proxy_get_shared_data(const char *k, size_t kl, char **v, size_t *vl, u32 *cas);
IMPORT(proxy_register_shared_queue) u32 proxy_register_shared_queue(const char *n, size_t nl, u32 *token);
IMPORT(proxy_resolve_shared_queue)
u32 proxy_resolve_shared_queue(const char *vm, size_t vml, const char *n, size_t nl, u32 *token);
IMPORT(proxy_enqueue_shared_queue) u32 proxy_enqueue_shared_queue(u32 token, const char *d, size_t dl);
IMPORT(proxy_dequeue_shared_queue) u32 proxy_dequeue_shared_queue(u32 token, char **d, size_t *dl);

// WASI (wasi_snapshot_preview1), called as wasi-libc calls them.
WASI(fd_write) u32 fd_write(u32 fd, const void *iovs, size_t n, size_t *written);
WASI(fd_read) u32 fd_read(u32 fd, const void *iovs, size_t n, size_t *nread);
WASI(fd_seek) u32 fd_seek(u32 fd, i64 offset, u32 whence, u64 *pos);
WASI(fd_close) u32 fd_close(u32 fd);
WASI(fd_filestat_get) u32 fd_filestat_get(u32 fd, void *stat);
WASI(fd_readdir) u32 fd_readdir(u32 fd, char *buf, size_t n, u64 cookie, size_t *used);
WASI(fd_prestat_get) u32 fd_prestat_get(u32 fd, void *prestat);
WASI(fd_prestat_dir_name) u32 fd_prestat_dir_name(u32 fd, char *p, size_t n);
WASI(path_open)
u32 path_open(u32 fd, u32 dirflags, const char *p, size_t n, u32 oflags, u64 rights, u64 inheriting, u32 fdflags,
              u32 *out);
WASI(poll_oneoff) u32 poll_oneoff(const void *in, void *out, size_t n, size_t *nevents);

// clang turns copy and fill loops into memcpy/memset calls: here they are (volatile, so not into themselves).
void *memcpy(void *d, const void *s, size_t n) {
  volatile char *dd = d;
  const char *ss = s;
  for (size_t i = 0; i < n; i++) dd[i] = ss[i];
  return d;
}
void *memset(void *d, int c, size_t n) {
  volatile char *dd = d;
  for (size_t i = 0; i < n; i++) dd[i] = (char)c;
  return d;
}

// The host copies results into memory from here. A bump allocator over a static arena is
// enough: the plugins use or copy out each result at once, so a full arena starts over.
static char arena[PW_ARENA_SIZE];
static size_t arena_used;

EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t n) {
  n = (n + 7) & ~(size_t)7;
  if (arena_used + n > sizeof(arena)) arena_used = 0;
  void *p = arena + arena_used;
  arena_used += n;
  return p;
}

static inline size_t slen(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}
// Whether the n bytes at a are the C string b.
static inline int eq(const char *a, size_t al, const char *b) {
  size_t bl = slen(b);
  if (al != bl) return 0;
  for (size_t i = 0; i < al; i++)
    if (a[i] != b[i]) return 0;
  return 1;
}
static inline void copy(char *d, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) d[i] = s[i];
}

// A small text builder: reset ol, append, use out[0..ol).
static char out[PW_OUT_SIZE];
static size_t ol;
static inline void o_mem(const char *s, size_t n) {
  for (size_t i = 0; i < n && ol < sizeof(out); i++) out[ol++] = s[i];
}
static inline void o_str(const char *s) {
  for (; *s && ol < sizeof(out); s++) out[ol++] = *s;
}
static inline void o_u(u64 v) {
  char d[20];
  int n = 0;
  do d[n++] = '0' + v % 10, v /= 10;
  while (v);
  while (n && ol < sizeof(out)) out[ol++] = d[--n];
}

// The request header `name` (its bytes in the arena, *len long), or 0 when absent.
static inline char *req_header(const char *name, size_t *len) {
  char *v = 0;
  *len = 0;
  if (proxy_get_header_map_value(MAP_REQUEST_HEADERS, name, slen(name), &v, len) != 0) return 0;
  return v;
}
// Sets (replaces) the request header k.
static inline void set_req(const char *k, const char *v, size_t vl) {
  proxy_replace_header_map_value(MAP_REQUEST_HEADERS, k, slen(k), v, vl);
}


// Header pairs as the host takes them (proxy_send_local_response, proxy_http_call): count,
// (key len, value len)*, then key\0value\0 each. pair() adds one (its strings must live until
// encode_pairs()), encode_pairs() writes pairs[0..pairs_len) and starts the next list.
static char pairs[1024];
static size_t pairs_len;
static const char *pk[16], *pv[16];
static size_t np;
static inline void pair(const char *k, const char *v) { pk[np] = k, pv[np] = v, np++; }
static inline void encode_pairs(void) {
  size_t o = 4 + np * 8;
  *(u32 *)pairs = np;
  for (size_t i = 0; i < np; i++) {
    size_t kl = slen(pk[i]), vl = slen(pv[i]);
    *(u32 *)(pairs + 4 + i * 8) = kl;
    *(u32 *)(pairs + 8 + i * 8) = vl;
    copy(pairs + o, pk[i], kl + 1), o += kl + 1;
    copy(pairs + o, pv[i], vl + 1), o += vl + 1;
  }
  pairs_len = o;
  np = 0;
}

#endif
