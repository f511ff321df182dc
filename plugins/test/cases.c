// Test plugin for the Envoy behaviours of issue 14 (ABI 0.2.1, C against the
// ABI, no libc). The request header `x-case` picks a scenario; results go to
// request headers (the echo upstream shows them) or into a local response.
//
//   append      on_request_body at the end appends "+go" with start 0x7fffffff
//               (the Go SDK's append), "+at" with start = body size and "+max"
//               with start 0xffffffff
//   callpseudo  http_call to upstream "app" with :path "/first" then
//               "/second" (and :method twice): the first wins; the answer
//               (its headers, :status included, and body) is passed on as a
//               local response with x-call: 1
//   inject      a local response whose header names and values carry CR LF
//   poll        poll_oneoff with one clock subscription: x-poll = errno,
//               events, type, userdata echoed (0:1:0:1)
//   both        (no phase configured) request body +req, response header
//               x-both: resp, response body +resp
//   canary      sets x-canary: 1 (routing runs again: a route matching it wins)
//   repath      sets :path /other/z?q=1 (routing runs again on it)
//   foreign     foreign functions: x-foreign = statuses and checks (0:1:0:1:3:0:0:1)
//   meta        x-meta = route metadata tier | metadata n | VM configuration | plugin_vm_id
//   hist        records 3 and 700 in the histogram metric cases_size
//   panic       writes a Go-style panic and traceback to stderr in pieces, then
//               traps (a crash loop logs it once)
//
// Every other request gets x-cases: <plugin config> and passes. A configuration
// "until:<unix ms>" is refused (on_configure false) until that time.
//
// Build: deno task build:plugins (clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry).

#define PW_ARENA_SIZE (256 * 1024)
#include "proxy_wasm_c.h"

static char config[256];
static size_t config_len;

EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}
EXPORT(proxy_on_context_create) void proxy_on_context_create(u32 id, u32 root) {}
EXPORT(proxy_on_vm_start) u32 proxy_on_vm_start(u32 root, u32 size) { return 1; }

EXPORT(proxy_on_configure) u32 proxy_on_configure(u32 root, u32 size) {
  char *p = 0;
  size_t n = 0;
  config_len = 0;
  if (proxy_get_buffer_bytes(BUFFER_PLUGIN_CONFIGURATION, 0, size, &p, &n) == 0 && p) {
    if (n > sizeof(config)) n = sizeof(config);
    copy(config, p, n);
    config_len = n;
  }
  // "until:<unix ms>": the configuration is refused until then (background start retries).
  if (config_len > 6 && eq(config, 6, "until:")) {
    u64 until = 0, ns = 0;
    for (size_t i = 6; i < config_len; i++) until = until * 10 + (config[i] - '0');
    proxy_get_current_time_nanoseconds(&ns);
    if (ns / 1000000 < until) return 0;
  }
  return 1;
}

// The request waiting for this plugin's http_call.
static u32 call_ctx;

// Go's runtime writes a panic piece by piece: the message, then a traceback.
static void panic_write(const char *s) {
  struct {
    const char *p;
    size_t n;
  } iov = {s, slen(s)};
  size_t w;
  fd_write(2, &iov, 1, &w);
}

static u32 do_panic(void) {
  panic_write("panic: ");
  panic_write("boom from cases.c");
  panic_write("\n\ngoroutine 1 [running]:\n");
  for (int i = 0; i < 60; i++) panic_write("main.handler(...)\n\t/src/main.go:42 +0x1\n");
  __builtin_trap();
}

static u32 do_poll(void) {
  // One clock subscription (48 bytes) and room for one event (32 bytes).
  u64 sub[6] = {0};
  u64 ev[4] = {0};
  sub[0] = 0x1234;               // userdata
  ((char *)sub)[8] = 0;          // tag: clock
  ((u32 *)sub)[4] = 1;           // clock id: monotonic
  sub[3] = 1000000;              // timeout: 1 ms, relative
  size_t n = 0;
  u32 err = poll_oneoff(sub, ev, 1, &n);
  ol = 0;
  o_u(err), o_str(":"), o_u(n), o_str(":"), o_u(((unsigned char *)ev)[10]), o_str(":");
  o_u(ev[0] == 0x1234);
  set_req("x-poll", out, ol);
  return CONTINUE;
}

static u32 do_inject(void) {
  pair("x-ok", "1");
  pair("x-bad\r\nx-injected", "v");
  pair("x-val", "a\r\nx-injected2: b");
  pair("X-Upper", "kept");
  pair(":status", "201");
  encode_pairs();
  proxy_send_local_response(200, "", 0, "local\n", 6, pairs, pairs_len, -1);
  return PAUSE;
}

static u32 do_callpseudo(u32 ctx) {
  pair(":path", "/first");
  pair(":method", "GET");
  pair(":authority", "app");
  pair(":path", "/second");
  pair(":method", "DELETE");
  pair("x-from", "cases");
  encode_pairs();
  u32 token = 0;
  if (proxy_http_call("app", 3, pairs, pairs_len, "", 0, "", 0, 5000, &token) != 0) {
    set_req("x-call-failed", "1", 1);
    return CONTINUE;
  }
  call_ctx = ctx;
  return PAUSE;
}

EXPORT(proxy_on_http_call_response)
void proxy_on_http_call_response(u32 root, u32 token, u32 nh, u32 body_size, u32 nt) {
  char *h = 0, *b = 0;
  size_t hl = 0, bl = 0;
  proxy_get_header_map_pairs(MAP_HTTP_CALL_RESPONSE_HEADERS, &h, &hl);
  // Copied out: the next allocation may reuse the arena.
  static char hs[2048];
  if (hl > sizeof(hs)) hl = 0;
  copy(hs, h, hl);
  proxy_get_buffer_bytes(BUFFER_HTTP_CALL_RESPONSE_BODY, 0, body_size, &b, &bl);
  static char bs[8192];
  if (bl > sizeof(bs)) bl = sizeof(bs);
  copy(bs, b, bl);
  proxy_set_effective_context(call_ctx);
  // The call's own headers, :status included, as the local response's headers.
  proxy_send_local_response(200, "", 0, bs, bl, hs, hl, -1);
}

// Foreign functions: compress, uncompress (round trip), declare_property, clear_route_cache, an unknown one.
static u32 do_foreign(void) {
  static const char text[] = "hello hello hello hello hello hello";
  static char z[256];
  char *r = 0;
  size_t rl = 0, zl = 0;
  u32 sc = proxy_call_foreign_function("compress", 8, text, sizeof(text) - 1, &r, &rl);
  if (sc == 0 && rl <= sizeof(z)) copy(z, r, rl), zl = rl;
  r = 0, rl = 0;
  u32 su = proxy_call_foreign_function("uncompress", 10, z, zl, &r, &rl);
  int same = su == 0 && rl == sizeof(text) - 1;
  for (size_t i = 0; same && i < rl; i++) same = r[i] == text[i];
  u32 sb = proxy_call_foreign_function("uncompress", 10, "junk", 4, &r, &rl);
  u32 sd = proxy_call_foreign_function("declare_property", 16, "", 0, &r, &rl);
  u32 sr = proxy_call_foreign_function("clear_route_cache", 17, "", 0, &r, &rl);
  u32 sn = proxy_call_foreign_function("no_such_function", 16, "", 0, &r, &rl);
  ol = 0;
  o_u(sc), o_str(":"), o_u(zl < sizeof(text) - 1), o_str(":"), o_u(su), o_str(":"), o_u(same), o_str(":");
  o_u(sb), o_str(":"), o_u(sd), o_str(":"), o_u(sr), o_str(":"), o_u(sn);
  set_req("x-foreign", out, ol);
  return CONTINUE;
}

// Route metadata, VM configuration and vm_id: x-meta = tier | n | vm_config | vm_id.
static u32 do_meta(void) {
  static const char tier[] = "xds\0route_metadata\0filter_metadata\0loom\0tier";
  static const char n[] = "metadata\0filter_metadata\0loom\0n";
  static const char vmid[] = "plugin_vm_id";
  char *v = 0;
  size_t vl = 0;
  ol = 0;
  if (proxy_get_property(tier, sizeof(tier) - 1, &v, &vl) == 0) o_mem(v, vl);
  o_str("|");
  if (proxy_get_property(n, sizeof(n) - 1, &v, &vl) == 0 && vl == 8) o_u(*(u64 *)v);
  o_str("|");
  if (proxy_get_buffer_bytes(BUFFER_VM_CONFIGURATION, 0, 1024, &v, &vl) == 0 && v) o_mem(v, vl);
  o_str("|");
  if (proxy_get_property(vmid, sizeof(vmid) - 1, &v, &vl) == 0) o_mem(v, vl);
  set_req("x-meta", out, ol);
  return CONTINUE;
}

static u32 body_case;

EXPORT(proxy_on_request_headers) u32 proxy_on_request_headers(u32 ctx, u32 n, u32 eos) {
  size_t cl = 0;
  char *c = req_header("x-case", &cl);
  body_case = 0;
  if (!c) {
    set_req("x-cases", config, config_len);
    return CONTINUE;
  }
  if (eq(c, cl, "append")) {
    body_case = 1;
    return CONTINUE;
  }
  if (eq(c, cl, "both")) {
    body_case = 2;
    return CONTINUE;
  }
  if (eq(c, cl, "canary")) { // a header edit routes the request again (Envoy's route cache cleared)
    set_req("x-canary", "1", 1);
    return CONTINUE;
  }
  if (eq(c, cl, "repath")) {
    set_req(":path", "/other/z?q=1", 12);
    return CONTINUE;
  }
  if (eq(c, cl, "foreign")) return do_foreign();
  if (eq(c, cl, "meta")) return do_meta();
  if (eq(c, cl, "hist")) { // a histogram metric: wasm_cases_size, values 3 and 700
    u32 id = 0;
    proxy_define_metric(2, "cases_size", 10, &id);
    proxy_record_metric(id, 3);
    proxy_record_metric(id, 700);
    return CONTINUE;
  }
  if (eq(c, cl, "callpseudo")) return do_callpseudo(ctx);
  if (eq(c, cl, "inject")) return do_inject();
  if (eq(c, cl, "poll")) return do_poll();
  if (eq(c, cl, "panic")) return do_panic();
  return CONTINUE;
}

EXPORT(proxy_on_request_body) u32 proxy_on_request_body(u32 ctx, u32 size, u32 eos) {
  if (body_case == 2) {
    if (eos) proxy_set_buffer_bytes(BUFFER_REQUEST_BODY, 0xffffffff, 0, "+req", 4);
    return CONTINUE;
  }
  if (body_case != 1) return CONTINUE;
  if (!eos) return PAUSE;
  size_t len = 0;
  u32 flags = 0;
  proxy_set_buffer_bytes(BUFFER_REQUEST_BODY, 0x7fffffff, 0, "+go", 3);
  proxy_get_buffer_status(BUFFER_REQUEST_BODY, &len, &flags);
  proxy_set_buffer_bytes(BUFFER_REQUEST_BODY, len, 0, "+at", 3);
  proxy_set_buffer_bytes(BUFFER_REQUEST_BODY, 0xffffffff, 0, "+max", 4);
  return CONTINUE;
}

// "both": a plugin editing both directions gets every callback it exports, with no phase configured.
EXPORT(proxy_on_response_headers) u32 proxy_on_response_headers(u32 ctx, u32 n, u32 eos) {
  if (body_case == 2) proxy_add_header_map_value(MAP_RESPONSE_HEADERS, "x-both", 6, "resp", 4);
  return CONTINUE;
}

EXPORT(proxy_on_response_body) u32 proxy_on_response_body(u32 ctx, u32 size, u32 eos) {
  if (body_case == 2 && eos) proxy_set_buffer_bytes(BUFFER_RESPONSE_BODY, 0xffffffff, 0, "+resp", 5);
  return CONTINUE;
}
