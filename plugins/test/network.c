// Test network (L4) filter for tcp listeners (issue 14 item 10; ABI 0.2.1, C against the ABI, no libc).
// network_0_1_0.c builds it for ABI 0.1.0 (NETWORK_ABI_0_1_0): the marker, and proxy_resume_downstream /
// proxy_resume_upstream / proxy_close_downstream / proxy_close_upstream for continue_stream / close_stream.
// The plugin configuration is a list of words that switch behaviours on:
//
//   upper   downstream bytes (client to upstream) are upper-cased
//   line    downstream bytes are held (Pause) until a window holds a newline; then the window
//           goes on prefixed with "[<window length>]" (it saw what it held plus the new bytes)
//   hold    a window containing "HOLD" is paused; the next tick appends "!" to the held bytes and
//           continues them with proxy_continue_stream(DOWNSTREAM) (proxy_set_effective_context)
//   tag     the first upstream bytes of a connection (upstream to client) are prefixed with
//           "up=<upstream.address>;src=<source.address>;dst=<destination.address>;sni=<SNI>;"
//   pausenew  on_new_connection pauses; the next tick continues the connection
//   upctl   upstream bytes (upstream to client) containing "WAIT" are paused; the next tick appends "!"
//           and continues them (UPSTREAM); upstream bytes containing "BYE" close the UPSTREAM stream
//
// Always: a window containing "QUIT" is dropped and the connection closed (proxy_close_stream);
// "TRAP" traps (both looked for in a window's first 256 bytes only, unless a mode reads it all). Counters (GET /metrics, wasm_ prefixed): net_connections, net_downstream_bytes,
// net_upstream_bytes, net_close_downstream_{local,remote,unknown}, net_close_upstream_{...},
// net_deleted, and net_sni_<server name> per connection with an SNI.
//
// Build: deno task build:plugins (clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry).

#define PW_ARENA_SIZE (1024 * 1024)
#define PW_OUT_SIZE 8192
#include "proxy_wasm_c.h"

static int has(const char *hay, size_t hl, const char *needle) {
  size_t nl = slen(needle);
  for (size_t i = 0; i + nl <= hl; i++) {
    size_t j = 0;
    while (j < nl && hay[i + j] == needle[j]) j++;
    if (j == nl) return 1;
  }
  return 0;
}

static u32 counter(const char *name, size_t n) {
  u32 id = 0;
  proxy_define_metric(METRIC_COUNTER, name, n, &id);
  return id;
}
static void count(const char *name, i64 by) { proxy_increment_metric(counter(name, slen(name)), by); }

static void property(const char *path, size_t pl) {
  char *v = 0;
  size_t vl = 0;
  if (proxy_get_property(path, pl, &v, &vl) == 0) o_mem(v, vl);
}

enum { STREAM_UPSTREAM = 3 };

#ifdef NETWORK_ABI_0_1_0
// ABI 0.1.0's names: one function per direction, no stream type argument.
IMPORT(proxy_resume_downstream) u32 proxy_resume_downstream(void);
IMPORT(proxy_resume_upstream) u32 proxy_resume_upstream(void);
IMPORT(proxy_close_downstream) u32 proxy_close_downstream(void);
IMPORT(proxy_close_upstream) u32 proxy_close_upstream(void);
EXPORT(proxy_abi_version_0_1_0) void proxy_abi_version_0_1_0(void) {}
static u32 resume(u32 stream) { return stream == STREAM_UPSTREAM ? proxy_resume_upstream() : proxy_resume_downstream(); }
static u32 close_side(u32 stream) { return stream == STREAM_UPSTREAM ? proxy_close_upstream() : proxy_close_downstream(); }
#else
EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}
static u32 resume(u32 stream) { return proxy_continue_stream(stream); }
static u32 close_side(u32 stream) { return proxy_close_stream(stream); }
#endif

// Configuration words.
static int f_upper, f_line, f_hold, f_tag, f_pausenew, f_upctl;

// Per connection: whether its first upstream bytes were seen (by context id).
static u32 seen_ctx[256];
// Contexts waiting for the next tick: held data, or a paused new connection; the stream type of each.
static u32 waiting[64];
static u32 waiting_stream[64];
static u32 nwaiting;

EXPORT(proxy_on_context_create) void proxy_on_context_create(u32 ctx, u32 parent) {}

EXPORT(proxy_on_vm_start) u32 proxy_on_vm_start(u32 root, u32 size) { return 1; }

EXPORT(proxy_on_configure) u32 proxy_on_configure(u32 root, u32 size) {
  char *c = 0;
  size_t cl = 0;
  proxy_get_buffer_bytes(BUFFER_PLUGIN_CONFIGURATION, 0, size, &c, &cl);
  f_upper = has(c, cl, "upper");
  f_line = has(c, cl, "line");
  f_hold = has(c, cl, "hold");
  f_tag = has(c, cl, "tag");
  f_pausenew = has(c, cl, "pausenew");
  f_upctl = has(c, cl, "upctl");
  if (f_hold || f_pausenew || f_upctl) proxy_set_tick_period_milliseconds(10);
  return 1;
}

EXPORT(proxy_on_tick) void proxy_on_tick(u32 root) {
  for (u32 i = 0; i < nwaiting; i++) {
    if (proxy_set_effective_context(waiting[i]) != 0) continue;
    // Held bytes are the stream's buffer outside a data callback too: mark them, then let them go.
    u32 up = waiting_stream[i] == STREAM_UPSTREAM;
    proxy_set_buffer_bytes(up ? BUFFER_UPSTREAM_DATA : BUFFER_DOWNSTREAM_DATA, 0xffffffff, 0, "!", 1);
    resume(waiting_stream[i]);
  }
  nwaiting = 0;
  proxy_set_effective_context(root);
}

static void wait_tick(u32 ctx, u32 stream) {
  if (nwaiting < sizeof(waiting) / sizeof(waiting[0])) waiting_stream[nwaiting] = stream, waiting[nwaiting++] = ctx;
}

EXPORT(proxy_on_new_connection) u32 proxy_on_new_connection(u32 ctx) {
  count("net_connections", 1);
  seen_ctx[ctx & 255] = 0;
  char *v = 0;
  size_t vl = 0;
  const char *p = "connection.requested_server_name";
  if (proxy_get_property(p, slen(p), &v, &vl) == 0 && vl > 0) {
    ol = 0;
    o_str("net_sni_");
    o_mem(v, vl);
    proxy_increment_metric(counter(out, ol), 1);
  }
  if (f_pausenew) {
    wait_tick(ctx, STREAM_DOWNSTREAM);
    return PAUSE;
  }
  return CONTINUE;
}

EXPORT(proxy_on_downstream_data) u32 proxy_on_downstream_data(u32 ctx, u32 size, u32 eos) {
  count("net_downstream_bytes", size);
  if (size == 0) return CONTINUE;
  char *d = 0;
  size_t dl = 0;
  // The magic words are looked for in a window's first 256 bytes unless a mode reads it all.
  int all = f_upper || f_line || f_hold;
  if (proxy_get_buffer_bytes(BUFFER_DOWNSTREAM_DATA, 0, all || size < 256 ? size : 256, &d, &dl) != 0) {
    return CONTINUE;
  }
  if (has(d, dl, "TRAP")) __builtin_trap();
  if (has(d, dl, "QUIT")) {
    proxy_set_buffer_bytes(BUFFER_DOWNSTREAM_DATA, 0, size, "", 0);
    close_side(STREAM_DOWNSTREAM);
    return CONTINUE;
  }
  if (f_hold && has(d, dl, "HOLD")) {
    wait_tick(ctx, STREAM_DOWNSTREAM);
    return PAUSE;
  }
  if (f_line && !eos && !has(d, dl, "\n")) return PAUSE;
  if (f_upper) {
    for (size_t i = 0; i < dl; i++)
      if (d[i] >= 'a' && d[i] <= 'z') d[i] -= 32;
    proxy_set_buffer_bytes(BUFFER_DOWNSTREAM_DATA, 0, size, d, dl);
  }
  if (f_line) {
    ol = 0;
    o_str("[");
    o_u(dl);
    o_str("]");
    proxy_set_buffer_bytes(BUFFER_DOWNSTREAM_DATA, 0, 0, out, ol); // prepend
  }
  return CONTINUE;
}

EXPORT(proxy_on_upstream_data) u32 proxy_on_upstream_data(u32 ctx, u32 size, u32 eos) {
  count("net_upstream_bytes", size);
  if (f_tag && size > 0 && seen_ctx[ctx & 255] != ctx) {
    seen_ctx[ctx & 255] = ctx;
    ol = 0;
    o_str("up=");
    property("upstream.address", 16);
    o_str(";src=");
    property("source.address", 14);
    o_str(";dst=");
    property("destination.address", 19);
    o_str(";sni=");
    property("connection.requested_server_name", 32);
    o_str(";");
    proxy_set_buffer_bytes(BUFFER_UPSTREAM_DATA, 0, 0, out, ol); // prepend
  }
  if (f_upctl && size > 0) {
    char *d = 0;
    size_t dl = 0;
    if (proxy_get_buffer_bytes(BUFFER_UPSTREAM_DATA, 0, size, &d, &dl) != 0) return CONTINUE;
    if (has(d, dl, "BYE")) {
      proxy_set_buffer_bytes(BUFFER_UPSTREAM_DATA, 0, size, "", 0);
      close_side(STREAM_UPSTREAM);
      return CONTINUE;
    }
    if (has(d, dl, "WAIT")) {
      wait_tick(ctx, STREAM_UPSTREAM);
      return PAUSE;
    }
  }
  return CONTINUE;
}

static void closed(const char *side, u32 peer) {
  ol = 0;
  o_str("net_close_");
  o_str(side);
  o_str(peer == 1 ? "_local" : peer == 2 ? "_remote" : "_unknown");
  proxy_increment_metric(counter(out, ol), 1);
}

EXPORT(proxy_on_downstream_connection_close) void proxy_on_downstream_connection_close(u32 ctx, u32 peer) {
  closed("downstream", peer);
}

EXPORT(proxy_on_upstream_connection_close) void proxy_on_upstream_connection_close(u32 ctx, u32 peer) {
  closed("upstream", peer);
}

EXPORT(proxy_on_done) u32 proxy_on_done(u32 ctx) { return 1; }

EXPORT(proxy_on_delete) void proxy_on_delete(u32 ctx) { count("net_deleted", 1); }
