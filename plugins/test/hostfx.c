// Test plugin for Loom's host features of issue 14 item 11 (ABI 0.2.1, C
// against the ABI, no libc): DNS, timers and read-only files, all reached as
// foreign functions, completions through proxy_on_foreign_function (or, with
// the plugin configuration "queue", through a shared queue named with
// completions_to_queue, as a Go SDK plugin would).
//
// Root context, at configure: a repeating 10 ms timer counts its firings into
// shared data <cfg>.timer and cancels itself at 5; then it sets a one-shot
// 30 ms timer and a 5 ms one it cancels at once (and cancels again: NOT_FOUND).
// The one-shot one writes <cfg>.once = fired:<count>:<5 ms timer fired>:<cancel
// status>:<second cancel status> (fired:5:0:0:1 when all is well).
//
// Requests (header x-case; answered with a local response):
//   dns      dns_resolve of x-name (and x-type, if any): body "<status>:<token>";
//            the answer lands in shared data <cfg>.dns.<x-name> as
//            "<answer status>:<addresses or error>"
//   get      the shared data x-key: 200 and its value, or 404
//   read     read_file of x-path: x-status = its status, body = the bytes
//   wasi     reads x-path in preopen x-dir with WASI calls as wasi-libc does:
//            x-errno (path_open), x-size (fd_filestat_get), x-end (fd_seek to
//            the end), x-close (fd_close); body = the bytes (read 7 at a time)
//   write    path_open in x-dir with O_CREAT|O_TRUNC (x-errno) and with the
//            fd_write right alone (x-errno2)
//   list     fd_readdir of preopen x-dir: body = names, comma-separated
//   unknown  an unknown foreign function: x-status
//
// Build: deno task build:plugins (clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry).

#define PW_ARENA_SIZE (256 * 1024)
#define PW_OUT_SIZE 65536
#include "proxy_wasm_c.h"

// WASI rights and open flags this plugin asks for.
enum {
  RIGHT_FD_READ = 1 << 1,
  RIGHT_FD_SEEK = 1 << 2,
  RIGHT_FD_WRITE = 1 << 6,
  RIGHT_FD_READDIR = 1 << 14,
  RIGHT_FD_FILESTAT_GET = 1 << 21,
  O_CREAT = 1,
  O_TRUNC = 8,
};

// The configuration ("fx" when empty) prefixes every shared data key.
static char cfg[32] = "fx";
static size_t cfg_len = 2;

static void put(const char *suffix, const char *v, size_t vl) {
  static char key[300];
  size_t kl = 0, sl = slen(suffix);
  copy(key, cfg, cfg_len), kl = cfg_len;
  copy(key + kl, suffix, sl), kl += sl;
  proxy_set_shared_data(key, kl, v, vl, 0);
}

static u32 call(const char *name, const char *arg, size_t al, char **r, size_t *rl) {
  *r = 0, *rl = 0;
  return proxy_call_foreign_function(name, slen(name), arg, al, r, rl);
}
static u32 le32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return u[0] | u[1] << 8 | u[2] << 16 | (u32)u[3] << 24;
}
static u32 set_timer(u32 ms, u32 repeat) {
  u32 arg[2] = {ms, repeat};
  char *r;
  size_t rl;
  if (call("set_timer", (const char *)arg, 8, &r, &rl) != 0 || rl != 4) return 0;
  return le32(r);
}
static u32 cancel_timer(u32 id) {
  char *r;
  size_t rl;
  return call("cancel_timer", (const char *)&id, 4, &r, &rl);
}

static u32 repeating, once, cancelled, ticks, cancelled_fired, st_cancel, st_cancel2;

// Lookups in flight: token and name.
static struct {
  u32 token;
  char name[256];
  size_t len;
} lookups[16];

EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}
EXPORT(proxy_on_context_create) void proxy_on_context_create(u32 id, u32 root) {}
EXPORT(proxy_on_vm_start) u32 proxy_on_vm_start(u32 root, u32 size) { return 1; }

EXPORT(proxy_on_configure) u32 proxy_on_configure(u32 root, u32 size) {
  char *p = 0;
  size_t n = 0;
  if (size > 0 && proxy_get_buffer_bytes(BUFFER_PLUGIN_CONFIGURATION, 0, size, &p, &n) == 0 && p && n < sizeof(cfg)) {
    copy(cfg, p, n);
    cfg_len = n;
  }
  if (eq(cfg, cfg_len, "queue")) {
    u32 q = 0;
    char *r;
    size_t rl;
    if (proxy_register_shared_queue("completions", 11, &q) != 0) return 0;
    if (call("completions_to_queue", (const char *)&q, 4, &r, &rl) != 0) return 0;
  }
  repeating = set_timer(10, 1);
  return repeating != 0;
}

// One completion: a timer's firing or a lookup's answer.
static void completed(u32 id, const char *data, size_t len) {
  if (id == repeating) {
    ticks++;
    ol = 0, o_u(ticks), put(".timer", out, ol);
    if (ticks == 5) {
      cancel_timer(repeating);
      once = set_timer(30, 0);
      cancelled = set_timer(5, 0);
      st_cancel = cancel_timer(cancelled);
      st_cancel2 = cancel_timer(cancelled);
    }
    return;
  }
  if (id == cancelled) {
    cancelled_fired = 1;
    return;
  }
  if (id == once) {
    ol = 0;
    o_str("fired:"), o_u(ticks), o_str(":"), o_u(cancelled_fired), o_str(":"), o_u(st_cancel), o_str(":");
    o_u(st_cancel2);
    put(".once", out, ol);
    return;
  }
  for (int i = 0; i < 16; i++) {
    if (lookups[i].token != id || id == 0) continue;
    lookups[i].token = 0;
    static char suffix[300];
    copy(suffix, ".dns.", 5), copy(suffix + 5, lookups[i].name, lookups[i].len), suffix[5 + lookups[i].len] = 0;
    ol = 0;
    if (len > 0) o_u((unsigned char)data[0]), o_str(":"), o_mem(data + 1, len - 1);
    else o_str("empty");
    put(suffix, out, ol);
    return;
  }
}

EXPORT(proxy_on_foreign_function) void proxy_on_foreign_function(u32 root, u32 id, u32 size) {
  char *p = 0;
  size_t n = 0;
  if (size > 0) proxy_get_buffer_bytes(BUFFER_CALL_DATA, 0, size, &p, &n);
  completed(id, p, n);
}

// Queue mode: each item is the token (4 bytes LE) and the data.
EXPORT(proxy_on_queue_ready) void proxy_on_queue_ready(u32 root, u32 q) {
  char *p = 0;
  size_t n = 0;
  while (proxy_dequeue_shared_queue(q, &p, &n) == 0 && n >= 4) completed(le32(p), p + 4, n - 4);
}

// Numbers as local response header values (at most 4 a response).
static char numbers[4][24];
static void pair_u(const char *k, u64 v) {
  char d[20], *dst = numbers[np];
  int n = 0;
  do d[n++] = '0' + v % 10, v /= 10;
  while (v);
  while (n) *dst++ = d[--n];
  *dst = 0;
  pair(k, numbers[np]);
}
static void respond(u32 status, const char *body, size_t bl) {
  encode_pairs();
  proxy_send_local_response(status, "", 0, body, bl, pairs, pairs_len, -1);
}

// The preopened directory named `dir` (as wasi-libc finds it): its descriptor, or 0.
static u32 preopen(const char *dir, size_t dl) {
  static char name[256];
  for (u32 fd = 3; fd < 64; fd++) {
    u32 st[2];
    if (fd_prestat_get(fd, st) != 0) return 0;
    if (st[1] != dl || dl >= sizeof(name) || fd_prestat_dir_name(fd, name, dl) != 0) continue;
    int same = 1;
    for (size_t i = 0; i < dl; i++)
      if (name[i] != dir[i]) same = 0;
    if (same) return fd;
  }
  return 0;
}

static char path[512];

static u32 do_dns(void) {
  size_t nl, tl;
  char *name = req_header("x-name", &nl), *type = req_header("x-type", &tl);
  if (!name || nl >= 255) return CONTINUE;
  static char arg[300];
  size_t al = nl;
  copy(arg, name, nl);
  if (type) arg[al++] = 0, copy(arg + al, type, tl), al += tl;
  char *r;
  size_t rl;
  u32 st = call("dns_resolve", arg, al, &r, &rl);
  u32 token = st == 0 && rl == 4 ? le32(r) : 0;
  for (int i = 0; i < 16 && token; i++) {
    if (lookups[i].token != 0) continue;
    lookups[i].token = token, copy(lookups[i].name, name, nl), lookups[i].len = nl;
    break;
  }
  ol = 0, o_u(st), o_str(":"), o_u(token);
  respond(200, out, ol);
  return PAUSE;
}

static u32 do_get(void) {
  size_t kl;
  char *k = req_header("x-key", &kl);
  char *v = 0;
  size_t vl = 0;
  u32 cas;
  if (!k || proxy_get_shared_data(k, kl, &v, &vl, &cas) != 0) respond(404, "", 0);
  else respond(200, v, vl);
  return PAUSE;
}

static u32 do_read(void) {
  size_t pl;
  char *p = req_header("x-path", &pl);
  char *r;
  size_t rl;
  u32 st = call("read_file", p, p ? pl : 0, &r, &rl);
  pair_u("x-status", st);
  respond(200, st == 0 ? r : "", st == 0 ? rl : 0);
  return PAUSE;
}

// The preopen x-dir, with x-path copied to `path` (its length in *pl); 0 (and a 404 sent) when missing.
static u32 dir_and_path(size_t *pl) {
  size_t dl;
  char *d = req_header("x-dir", &dl);
  char *p = req_header("x-path", pl);
  u32 dir = d ? preopen(d, dl) : 0;
  if (!dir || !p || *pl >= sizeof(path)) {
    respond(404, "no preopen", 10);
    return 0;
  }
  copy(path, p, *pl);
  return dir;
}

static u32 do_wasi(void) {
  size_t pl;
  u32 dir = dir_and_path(&pl);
  if (!dir) return PAUSE;
  u32 fd = 0;
  u32 err = path_open(dir, 1, path, pl, 0, RIGHT_FD_READ | RIGHT_FD_SEEK | RIGHT_FD_FILESTAT_GET, 0, 0, &fd);
  pair_u("x-errno", err);
  ol = 0;
  if (err == 0) {
    u64 stat[8];
    fd_filestat_get(fd, stat);
    pair_u("x-size", stat[4]);
    // Small reads: the host keeps the position between them.
    static char chunk[7];
    struct {
      char *p;
      size_t n;
    } iov = {chunk, sizeof(chunk)};
    size_t got;
    while (fd_read(fd, &iov, 1, &got) == 0 && got > 0) o_mem(chunk, got);
    u64 end = 0;
    fd_seek(fd, 0, 2, &end);
    pair_u("x-end", end);
    pair_u("x-close", fd_close(fd));
  }
  respond(200, out, ol);
  return PAUSE;
}

static u32 do_write(void) {
  size_t pl;
  u32 dir = dir_and_path(&pl);
  if (!dir) return PAUSE;
  u32 fd = 0;
  pair_u("x-errno", path_open(dir, 1, path, pl, O_CREAT | O_TRUNC, RIGHT_FD_READ | RIGHT_FD_WRITE, 0, 0, &fd));
  pair_u("x-errno2", path_open(dir, 1, path, pl, 0, RIGHT_FD_WRITE, 0, 0, &fd));
  respond(200, "", 0);
  return PAUSE;
}

static u32 do_list(void) {
  size_t dl;
  char *d = req_header("x-dir", &dl);
  u32 dir = d ? preopen(d, dl) : 0;
  if (!dir) {
    respond(404, "no preopen", 10);
    return PAUSE;
  }
  static char buf[4096];
  size_t used = 0;
  ol = 0;
  if (fd_readdir(dir, buf, sizeof(buf), 0, &used) == 0) {
    // Records: d_next u64, d_ino u64, d_namlen u32, d_type u8 (24 bytes), then the name.
    for (size_t o = 0; o + 24 <= used;) {
      u32 nl = le32(buf + o + 16);
      if (o + 24 + nl > used) break;
      if (ol) o_str(",");
      o_mem(buf + o + 24, nl);
      o += 24 + nl;
    }
  }
  respond(200, out, ol);
  return PAUSE;
}

static u32 do_unknown(void) {
  char *r;
  size_t rl;
  pair_u("x-status", call("no_such_function", "", 0, &r, &rl));
  respond(200, "", 0);
  return PAUSE;
}

EXPORT(proxy_on_request_headers) u32 proxy_on_request_headers(u32 ctx, u32 n, u32 eos) {
  size_t cl;
  char *c = req_header("x-case", &cl);
  if (!c) return CONTINUE;
  if (eq(c, cl, "dns")) return do_dns();
  if (eq(c, cl, "get")) return do_get();
  if (eq(c, cl, "read")) return do_read();
  if (eq(c, cl, "wasi")) return do_wasi();
  if (eq(c, cl, "write")) return do_write();
  if (eq(c, cl, "list")) return do_list();
  if (eq(c, cl, "unknown")) return do_unknown();
  return CONTINUE;
}
