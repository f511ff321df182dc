// Test plugin for the gRPC host calls (ABI 0.2.1): proxy_grpc_call,
// proxy_grpc_stream, proxy_grpc_send, proxy_grpc_cancel, proxy_grpc_close,
// the four proxy_on_grpc_* callbacks and proxy_get_status.
//
// The plugin configuration is the upstream name. The request header `x-grpc`
// picks a scenario against the test.Echo service of tests/grpc/peer.py; the
// request waits (Pause) until the call or stream ends, then goes upstream with
// `x-grpc-log` holding what the root context saw, e.g. "I:i1;M:echo:hi;C:0:;".
//
//   unary    grpc_call(x-method or Unary, message x-msg, timeout x-timeout ms)
//   stream   grpc_stream(Bidi), send "one", "two", then grpc_close (half-close)
//   sstream  grpc_stream(ServerStream), send "3" with end_stream
//   cancel   grpc_stream(Bidi), send, cancel; then send/cancel/close the dead token
//   badup    grpc_call to an unknown upstream
//   sendcall grpc_send on a call token
// Callbacks for tokens the plugin does not know count in `grpc_stray`.
//
// Build: deno task build:plugins (clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry).

#include "proxy_wasm_c.h"

static char upstream[128];
static size_t upstream_len;
static u32 stray_metric;

// One slot per call or stream in flight: its token, the request waiting for it, and its log.
#define SLOTS 64
static struct {
  u32 token, ctx;
  char log[512];
  size_t len;
} slots[SLOTS];

static int slot_of(u32 token) {
  for (int i = 0; i < SLOTS; i++)
    if (slots[i].token == token && token != 0) return i;
  return -1;
}
static void put(int s, const char *p, size_t n) {
  for (size_t i = 0; i < n && slots[s].len < sizeof(slots[s].log); i++) slots[s].log[slots[s].len++] = p[i];
}
static void puts_(int s, const char *p) { put(s, p, slen(p)); }
static void putu(int s, u32 v) {
  char d[10];
  int n = 0;
  do d[n++] = '0' + v % 10, v /= 10;
  while (v);
  while (n) put(s, &d[--n], 1);
}
static void header_log(const char *text, size_t n) {
  static const char k[] = "x-grpc-log";
  proxy_replace_header_map_value(MAP_REQUEST_HEADERS, k, sizeof(k) - 1, text, n);
}

EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}
EXPORT(proxy_on_context_create) void proxy_on_context_create(u32 id, u32 root) {}
EXPORT(proxy_on_vm_start) u32 proxy_on_vm_start(u32 root, u32 size) { return 1; }

EXPORT(proxy_on_configure) u32 proxy_on_configure(u32 root, u32 size) {
  char *p = 0;
  size_t n = 0;
  upstream_len = 0;
  if (proxy_get_buffer_bytes(BUFFER_PLUGIN_CONFIGURATION, 0, size, &p, &n) == 0 && p) {
    if (n > sizeof(upstream)) n = sizeof(upstream);
    for (size_t i = 0; i < n; i++) upstream[i] = p[i];
    upstream_len = n;
  }
  static const char m[] = "grpc_stray";
  proxy_define_metric(0, m, sizeof(m) - 1, &stray_metric);
  return 1;
}

// Initial metadata: one pair ("x-meta", "from-plugin") in the pairs encoding.
static const char metadata[] = {1, 0, 0, 0, 6, 0, 0, 0, 11, 0, 0, 0, 'x', '-', 'm', 'e', 't', 'a', 0,
                                'f', 'r', 'o', 'm', '-', 'p', 'l', 'u', 'g', 'i', 'n', 0};
static const char svc[] = "test.Echo";

static int claim(u32 token, u32 ctx) {
  for (int i = 0; i < SLOTS; i++)
    if (slots[i].token == 0) {
      slots[i].token = token, slots[i].ctx = ctx, slots[i].len = 0;
      return i;
    }
  return -1;
}

EXPORT(proxy_on_request_headers) u32 proxy_on_request_headers(u32 ctx, u32 n, u32 eos) {
  size_t ml = 0, ul = 0, tl = 0, xl = 0;
  char *mode = req_header("x-grpc", &ml);
  if (!mode) return CONTINUE;
  char *method = req_header("x-method", &xl);
  u32 token = 0, st;
  char out[64];
  size_t ol = 0;
#define OUT(s) for (const char *q = s; *q; q++) out[ol++] = *q
#define OUTU(v) do { u32 x_ = v; out[ol++] = '0' + x_ / 10 % 10; out[ol++] = '0' + x_ % 10; } while (0)
  if (eq(mode, ml, "unary")) {
    size_t msgl = 0;
    char *msg = req_header("x-msg", &msgl);
    char *t = req_header("x-timeout", &tl);
    u32 timeout = 0;
    for (size_t i = 0; t && i < tl; i++) timeout = timeout * 10 + (t[i] - '0');
    if (!t) timeout = 5000;
    if (!method) method = "Unary", xl = 5;
    st = proxy_grpc_call(upstream, upstream_len, svc, sizeof(svc) - 1, method, xl, metadata, sizeof(metadata),
                         msg ? msg : "", msgl, timeout, &token);
  } else if (eq(mode, ml, "stream") || eq(mode, ml, "sstream")) {
    int server = ml == 7; // "sstream"
    if (!method) method = server ? "ServerStream" : "Bidi", xl = slen(method);
    st = proxy_grpc_stream(upstream, upstream_len, svc, sizeof(svc) - 1, method, xl, metadata, sizeof(metadata),
                           &token);
    if (st == 0 && server) proxy_grpc_send(token, "3", 1, 1);
    if (st == 0 && !server) {
      proxy_grpc_send(token, "one", 3, 0);
      proxy_grpc_send(token, "two", 3, 0);
      proxy_grpc_close(token);
    }
  } else if (eq(mode, ml, "cancel")) {
    st = proxy_grpc_stream(upstream, upstream_len, svc, sizeof(svc) - 1, "Bidi", 4, 0, 0, &token);
    OUT("cancel:");
    OUTU(st);
    OUTU(proxy_grpc_send(token, "x", 1, 0));
    OUTU(proxy_grpc_cancel(token));
    OUTU(proxy_grpc_send(token, "y", 1, 0)); // NOT_FOUND from here on
    OUTU(proxy_grpc_cancel(token));
    OUTU(proxy_grpc_close(token));
    header_log(out, ol);
    return CONTINUE;
  } else if (eq(mode, ml, "badup")) {
    st = proxy_grpc_call("nope", 4, svc, sizeof(svc) - 1, "Unary", 5, 0, 0, "", 0, 1000, &token);
    OUT("badup:");
    OUTU(st);
    header_log(out, ol);
    return CONTINUE;
  } else if (eq(mode, ml, "sendcall")) {
    st = proxy_grpc_call(upstream, upstream_len, svc, sizeof(svc) - 1, "Unary", 5, 0, 0, "", 0, 5000, &token);
    OUT("sendcall:");
    OUTU(st);
    OUTU(proxy_grpc_send(token, "x", 1, 0)); // BAD_ARGUMENT: a call token
    OUTU(proxy_grpc_cancel(token));
    header_log(out, ol);
    return CONTINUE;
  } else {
    return CONTINUE;
  }
  if (st != 0) {
    OUT("open-failed:");
    OUTU(st);
    header_log(out, ol);
    return CONTINUE;
  }
  if (claim(token, ctx) < 0) return CONTINUE;
  return PAUSE;
}

// The call or stream ended: the waiting request goes on with the log.
static void finish(int s) {
  u32 ctx = slots[s].ctx;
  slots[s].token = 0;
  proxy_set_effective_context(ctx);
  header_log(slots[s].log, slots[s].len);
  proxy_continue_stream(0);
}

static int known(u32 token) {
  int s = slot_of(token);
  if (s < 0) proxy_increment_metric(stray_metric, 1);
  return s;
}

static void put_value(int s, u32 map, const char *key) {
  char *v = 0;
  size_t n = 0;
  if (proxy_get_header_map_value(map, key, slen(key), &v, &n) == 0 && v) put(s, v, n);
}

EXPORT(proxy_on_grpc_receive_initial_metadata)
void proxy_on_grpc_receive_initial_metadata(u32 root, u32 token, u32 n) {
  int s = known(token);
  if (s < 0) return;
  puts_(s, "I:");
  put_value(s, MAP_GRPC_INITIAL, "x-initial");
  puts_(s, ";");
}

EXPORT(proxy_on_grpc_receive) void proxy_on_grpc_receive(u32 root, u32 token, u32 size) {
  int s = known(token);
  if (s < 0) return;
  char *p = 0;
  size_t n = 0;
  puts_(s, "M:");
  if (proxy_get_buffer_bytes(BUFFER_GRPC_RECEIVE, 0, size, &p, &n) == 0 && p) put(s, p, n);
  puts_(s, ";");
  if (token & 1) finish(s); // a unary call's answer ends it (no close callback)
}

EXPORT(proxy_on_grpc_receive_trailing_metadata)
void proxy_on_grpc_receive_trailing_metadata(u32 root, u32 token, u32 n) {
  int s = known(token);
  if (s < 0) return;
  puts_(s, "T:");
  put_value(s, MAP_GRPC_TRAILING, "x-sent");
  put_value(s, MAP_GRPC_TRAILING, "x-echo-meta"); // the initial metadata the server saw
  puts_(s, ";");
}

EXPORT(proxy_on_grpc_close) void proxy_on_grpc_close(u32 root, u32 token, u32 status) {
  int s = known(token);
  if (s < 0) return;
  u32 code = 99;
  char *p = 0;
  size_t n = 0;
  proxy_get_status(&code, &p, &n);
  puts_(s, "C:");
  putu(s, status);
  puts_(s, ":");
  if (code == status && p) put(s, p, n);
  puts_(s, ";");
  finish(s);
}
