// Test plugin for VMs shared by plugins (issue 14 item 8; ABI 0.2.1, C against
// the ABI, no libc). Plugin definitions with the same vm_id and module run in
// one VM, each with a root context of its own; this module shows it.
//
// Every request gets request headers (the echo upstream shows them):
//   x-q-plugin      the configuration of this stream's root context
//   x-q-root        this stream's root context id (from on_context_create)
//   x-q-inits       times the module's start code (_initialize) ran in this VM
//   x-q-vm-starts   on_vm_start calls in this VM (one per root context)
//   x-q-configures  on_configure calls in this VM
//   x-q-count       requests this VM served (every plugin in it counts)
//   x-q-root-deletes  root contexts deleted in this VM (a plugin retired by a reload)
//
// A configuration starting with "reg" registers the shared queue "jobs" in
// on_configure. The request header x-q picks an action:
//   enqueue:<item>  resolves "jobs" by vm_id (plugin_vm_id, or the header
//                   x-q-vm) and enqueues <item>; x-q-enq = resolve:enqueue status
//   read            x-q-got = the shared data "queues.got"
//   say             writes "<configuration> says hi" to stdout and "<configuration>
//                   warns" to stderr (WASI fd_write: the host logs them)
//   trap            traps (the VM fails)
// on_queue_ready dequeues every item and sets the shared data "queues.got" to
// "<root id>:<that root's configuration>:<item>".
//
// Build: deno task build:plugins (clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry).

#define PW_OUT_SIZE 512
#include "proxy_wasm_c.h"

static int starts(const char *a, size_t al, const char *b) {
  size_t bl = slen(b);
  if (al < bl) return 0;
  for (size_t i = 0; i < bl; i++)
    if (a[i] != b[i]) return 0;
  return 1;
}
static void set_u(const char *k, u64 v) {
  ol = 0;
  o_u(v);
  set_req(k, out, ol);
}

// VM-wide state: every plugin sharing the VM sees and counts it.
static u32 inits, vm_starts, configures, requests, root_deletes;

// Root contexts of this VM, one per plugin, with their own configuration.
struct root {
  u32 id;
  char config[64];
  size_t config_len;
};
static struct root roots[8];
static u32 nroots;
static struct root *root_of(u32 id) {
  if (id == 0) return 0;
  for (u32 i = 0; i < nroots; i++)
    if (roots[i].id == id) return &roots[i];
  return 0;
}
// Stream context id -> its root context id (ids are small and unique in the VM).
static u32 stream_root[256];

EXPORT(_initialize) void _initialize(void) { inits++; }
EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

EXPORT(proxy_on_context_create) void proxy_on_context_create(u32 id, u32 root) {
  if (root != 0) {
    stream_root[id & 255] = root;
    return;
  }
  if (root_of(id) == 0 && nroots < 8) roots[nroots++].id = id;
}

EXPORT(proxy_on_vm_start) u32 proxy_on_vm_start(u32 root, u32 size) {
  vm_starts++;
  return 1;
}

EXPORT(proxy_on_configure) u32 proxy_on_configure(u32 id, u32 size) {
  struct root *r = root_of(id);
  if (r == 0) return 0;
  configures++;
  char *p = 0;
  size_t n = 0;
  r->config_len = 0;
  if (proxy_get_buffer_bytes(BUFFER_PLUGIN_CONFIGURATION, 0, size, &p, &n) == 0 && p) {
    if (n > sizeof(r->config)) n = sizeof(r->config);
    copy(r->config, p, n);
    r->config_len = n;
  }
  u32 token = 0;
  if (starts(r->config, r->config_len, "reg")) return proxy_register_shared_queue("jobs", 4, &token) == 0;
  return 1;
}

// A root context's teardown (its plugin retired); stream contexts are no root context.
EXPORT(proxy_on_done) u32 proxy_on_done(u32 id) { return 1; }
EXPORT(proxy_on_delete) void proxy_on_delete(u32 id) {
  struct root *r = root_of(id);
  if (r == 0) return;
  root_deletes++;
  r->id = 0;
}

EXPORT(proxy_on_queue_ready) void proxy_on_queue_ready(u32 id, u32 token) {
  struct root *r = root_of(id);
  char *item = 0;
  size_t il = 0;
  while (proxy_dequeue_shared_queue(token, &item, &il) == 0) {
    ol = 0;
    o_u(id), o_str(":");
    if (r) o_mem(r->config, r->config_len);
    o_str(":"), o_mem(item, il);
    proxy_set_shared_data("queues.got", 10, out, ol, 0);
  }
}

static void enqueue(const char *item, size_t il) {
  static char item_copy[128], vm[128];
  if (il > sizeof(item_copy)) il = sizeof(item_copy);
  copy(item_copy, item, il);
  char *v = 0;
  size_t vl = 0;
  v = req_header("x-q-vm", &vl);
  if (v == 0) proxy_get_property("plugin_vm_id", 12, &v, &vl);
  if (vl > sizeof(vm)) vl = sizeof(vm);
  if (v) copy(vm, v, vl);
  u32 token = 0;
  u32 rs = proxy_resolve_shared_queue(vm, vl, "jobs", 4, &token);
  u32 es = rs == 0 ? proxy_enqueue_shared_queue(token, item_copy, il) : 99;
  ol = 0;
  o_u(rs), o_str(":"), o_u(es);
  set_req("x-q-enq", out, ol);
}

// Writes "<the root context's configuration><text>" to fd 1 or 2.
static void say(u32 fd, struct root *r, const char *text) {
  struct {
    const char *p;
    size_t n;
  } iov;
  size_t w;
  ol = 0;
  if (r) o_mem(r->config, r->config_len);
  o_str(text);
  iov.p = out, iov.n = ol;
  fd_write(fd, &iov, 1, &w);
}

EXPORT(proxy_on_request_headers) u32 proxy_on_request_headers(u32 ctx, u32 n, u32 eos) {
  requests++;
  u32 root = stream_root[ctx & 255];
  struct root *r = root_of(root);
  if (r) set_req("x-q-plugin", r->config, r->config_len);
  set_u("x-q-root", root);
  set_u("x-q-inits", inits);
  set_u("x-q-vm-starts", vm_starts);
  set_u("x-q-configures", configures);
  set_u("x-q-count", requests);
  set_u("x-q-root-deletes", root_deletes);
  size_t al = 0;
  char *a = req_header("x-q", &al);
  if (a == 0) return CONTINUE;
  if (starts(a, al, "enqueue:")) {
    enqueue(a + 8, al - 8);
  } else if (starts(a, al, "read")) {
    char *v = 0;
    size_t vl = 0;
    u32 cas = 0;
    if (proxy_get_shared_data("queues.got", 10, &v, &vl, &cas) == 0) set_req("x-q-got", v, vl);
  } else if (starts(a, al, "say")) {
    say(1, r, " says hi\n");
    say(2, r, " warns\n");
  } else if (starts(a, al, "trap")) {
    __builtin_trap();
  }
  return CONTINUE;
}
