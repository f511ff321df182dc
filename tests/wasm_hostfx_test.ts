/**
 * Loom's host features for plugins (issue 14 item 11), through a running
 * gateway with the C test plugin plugins/test/hostfx.c, all reached as
 * foreign functions: timers (repeat, one-shot, cancel), DNS (localhost and IP
 * literals answered directly, other names through a DNS server on loopback,
 * failures delivered as statuses), and read-only files (read_file and WASI
 * preopens: no `..`, no symlink out, no writes). Completions reach the plugin
 * through proxy_on_foreign_function, or through a shared queue as the Go SDK
 * needs. The config checks of `files` and `dns_server` name the YAML line.
 */
import assert from "node:assert/strict";
import { itest, startLoom, waitFor, yamlOf } from "./helpers.ts";
import { get } from "./gateway_util.ts";
import { startUpstream } from "./upstream.ts";
import { PLUGINS, type PluginSpec } from "./wasm_util.ts";
import { parseConfig } from "../src/config/load.ts";

const HOSTFX = PLUGINS + "hostfx.wasm";

/**
 * A DNS server on 127.0.0.1 (UDP) answering A/AAAA questions from `records`:
 * a name it does not know is NXDOMAIN, a known name without that type an
 * empty answer. Just enough DNS for Deno.resolveDns.
 */
function startDns(records: Record<string, { A?: string[]; AAAA?: string[] }>) {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (sock.addr as Deno.NetAddr).port;
  const serve = (async () => {
    for await (const [msg, peer] of sock) {
      const q = new DataView(msg.buffer, msg.byteOffset, msg.length);
      let o = 12;
      const labels: string[] = [];
      while (msg[o] !== 0) {
        labels.push(new TextDecoder().decode(msg.subarray(o + 1, o + 1 + msg[o]))), o += 1 + msg[o];
      }
      const qtype = q.getUint16(o + 1);
      const question = msg.subarray(12, o + 5);
      const rec = records[labels.join(".").toLowerCase()];
      const addrs = rec === undefined ? [] : (qtype === 1 ? rec.A : qtype === 28 ? rec.AAAA : []) ?? [];
      const answers = addrs.map((a) => {
        const rdata = qtype === 1
          ? new Uint8Array(a.split(".").map(Number))
          : new Uint8Array(16).fill(0).map((_, i) => i === 15 ? Number(a.split(":").pop() || "0") : 0);
        const r = new Uint8Array(12 + rdata.length);
        const v = new DataView(r.buffer);
        v.setUint16(0, 0xc00c); // the question's name
        v.setUint16(2, qtype);
        v.setUint16(4, 1);
        v.setUint32(6, 60);
        v.setUint16(10, rdata.length);
        r.set(rdata, 12);
        return r;
      });
      const head = new Uint8Array(12);
      const h = new DataView(head.buffer);
      h.setUint16(0, q.getUint16(0));
      h.setUint16(2, 0x8180 | (rec === undefined ? 3 : 0)); // response, RD, RA; NXDOMAIN for unknown names
      h.setUint16(4, 1);
      h.setUint16(6, answers.length);
      const out = new Uint8Array([...head, ...question, ...answers.flatMap((a) => [...a])]);
      await sock.send(out, peer).catch(() => {});
    }
  })().catch(() => {});
  return {
    address: `127.0.0.1:${port}`,
    close: async () => {
      sock.close();
      await serve;
    },
  };
}

/** The data directory the plugin reads, and a secret beside it that it must not. */
function makeFiles(): { tmp: string; data: string } {
  const tmp = Deno.makeTempDirSync({ prefix: "loom-hostfx-" });
  const data = `${tmp}/data`;
  Deno.mkdirSync(`${data}/sub`, { recursive: true });
  Deno.mkdirSync(`${tmp}/outside`);
  Deno.writeTextFileSync(`${data}/hello.txt`, "hello from a preopened directory\n");
  Deno.writeTextFileSync(`${data}/sub/inner.txt`, "inner");
  Deno.writeTextFileSync(`${tmp}/outside/secret.txt`, "secret");
  Deno.symlinkSync(`${tmp}/outside/secret.txt`, `${data}/link`);
  Deno.symlinkSync("hello.txt", `${data}/innerlink`);
  return { tmp, data };
}

type Spec = PluginSpec & { files?: { dir: string; as: string }[]; dns_server?: string };

itest("wasm hostfx: timers, DNS and read-only files as foreign functions", async () => {
  const { tmp, data } = makeFiles();
  const dns = startDns({ "svc.test": { A: ["10.1.2.3"] } });
  const app = startUpstream({ echo: "app" });
  const fx: Spec = { name: "fx", path: HOSTFX, files: [{ dir: data, as: "/data" }], dns_server: dns.address };
  // Inline isolation: completions take the plain callback path (fx: timeslice, the default).
  const fxq: Spec = { name: "fxq", path: HOSTFX, config: "queue", isolation: "inline" };
  const loom = await startLoom(
    yamlOf({ app, plugins: [fx, fxq], pluginRoutes: [["h", ["fx"]], ["q", ["fxq"]]] }),
  );
  const call = (route: string, headers: Record<string, string>) =>
    get(loom.url(`/${route}/x`), { headers: { "x-case": "get", ...headers } });
  const shared = (route: string, key: string, want?: (v: string) => boolean) =>
    waitFor(`shared data ${key}`, async () => {
      const r = await call(route, { "x-key": key });
      return r.status === 200 && (want === undefined || want(r.text)) ? r.text : undefined;
    }, 20_000);
  try {
    // Timers: a 10 ms repeating timer cancels itself at its 5th firing; then a 30 ms one-shot timer fires,
    // and a 5 ms one cancelled at once never does (a second cancel is NOT_FOUND).
    assert.equal(await shared("h", "fx.once"), "fired:5:0:0:1");
    assert.equal(await shared("h", "fx.timer"), "5");
    // Through a shared queue (completions_to_queue), as a Go SDK plugin gets them.
    assert.equal(await shared("q", "queue.once"), "fired:5:0:0:1");

    // DNS: the call answers a token at once (status 0), the answer comes later.
    const resolve = async (route: string, name: string, type?: string) => {
      const r = await call(route, { "x-case": "dns", "x-name": name, ...(type ? { "x-type": type } : {}) });
      assert.equal(r.status, 200);
      return r.text;
    };
    assert.match(await resolve("h", "localhost"), /^0:[1-9][0-9]*$/);
    assert.equal(await shared("h", "fx.dns.localhost"), "0:127.0.0.1\n::1");
    await resolve("h", "127.0.0.9");
    assert.equal(await shared("h", "fx.dns.127.0.0.9"), "0:127.0.0.9");
    // Through the resolver (the plugin's dns_server): found, no such name, no record of the type.
    await resolve("h", "svc.test", "A");
    assert.equal(await shared("h", "fx.dns.svc.test"), "0:10.1.2.3");
    await resolve("h", "nope.test");
    assert.match(await shared("h", "fx.dns.nope.test"), /^1:/);
    await resolve("h", "SVC.test", "AAAA");
    assert.match(await shared("h", "fx.dns.SVC.test"), /^1:/);
    // A malformed name or type: BAD_ARGUMENT at once, no token.
    assert.equal(await resolve("h", "bad name"), "2:0");
    assert.equal(await resolve("h", "localhost", "MX"), "2:0");
    // Queue delivery.
    await resolve("q", "localhost", "A");
    assert.equal(await shared("q", "queue.dns.localhost"), "0:127.0.0.1");

    // read_file: inside, through a symlink inside; NOT_FOUND; BAD_ARGUMENT for .., a symlink out, a directory.
    const read = async (route: string, path: string) => {
      const r = await call(route, { "x-case": "read", "x-path": path });
      return `${r.headers.get("x-status")}:${r.text}`;
    };
    assert.equal(await read("h", "/data/hello.txt"), "0:hello from a preopened directory\n");
    assert.equal(await read("h", "/data/innerlink"), "0:hello from a preopened directory\n");
    assert.equal(await read("h", "/data/sub/../sub/inner.txt"), "0:inner");
    assert.equal(await read("h", "/data/missing.txt"), "1:");
    assert.equal(await read("h", "/data/../outside/secret.txt"), "2:");
    assert.equal(await read("h", "/data/sub/../../outside/secret.txt"), "2:");
    assert.equal(await read("h", "/data/link"), "2:");
    assert.equal(await read("h", "/data/sub"), "2:");
    assert.equal(await read("h", "/etc/passwd"), "2:");
    // A plugin without files reads nothing.
    assert.equal(await read("q", "/data/hello.txt"), "2:");

    // WASI: the preopen /data as wasi-libc finds it; path_open, fd_filestat_get, fd_read, fd_seek, fd_close.
    const wasi = (path: string) => call("h", { "x-case": "wasi", "x-dir": "/data", "x-path": path });
    const w = await wasi("hello.txt");
    assert.equal(w.headers.get("x-errno"), "0");
    assert.equal(w.text, "hello from a preopened directory\n");
    assert.equal(w.headers.get("x-size"), "33");
    assert.equal(w.headers.get("x-end"), "33");
    assert.equal(w.headers.get("x-close"), "0");
    assert.equal((await wasi("sub/inner.txt")).text, "inner");
    assert.equal((await wasi("missing.txt")).headers.get("x-errno"), "44"); // ENOENT
    assert.equal((await wasi("../outside/secret.txt")).headers.get("x-errno"), "76"); // ENOTCAPABLE
    assert.equal((await wasi("link")).headers.get("x-errno"), "76");
    assert.equal((await wasi("/etc/passwd")).headers.get("x-errno"), "76");
    const wr = await call("h", { "x-case": "write", "x-dir": "/data", "x-path": "new.txt" });
    assert.equal(wr.headers.get("x-errno"), "69"); // EROFS: O_CREAT|O_TRUNC
    assert.equal(wr.headers.get("x-errno2"), "69"); // EROFS: the fd_write right
    assert.throws(() => Deno.statSync(`${data}/new.txt`), Deno.errors.NotFound);
    assert.equal(
      (await call("h", { "x-case": "list", "x-dir": "/data" })).text,
      "hello.txt,innerlink,link,sub",
    );
    // The plugin without files has no preopen.
    assert.equal(
      (await call("q", { "x-case": "wasi", "x-dir": "/data", "x-path": "hello.txt" })).status,
      404,
    );

    // An unknown foreign function stays NOT_FOUND.
    assert.equal((await call("h", { "x-case": "unknown" })).headers.get("x-status"), "1");
  } finally {
    await loom.close();
    await app.close();
    await dns.close();
    Deno.removeSync(tmp, { recursive: true });
  }
});

itest("wasm hostfx config: files dirs relative to the config file, a missing one named with its line", () => {
  const tmp = Deno.makeTempDirSync({ prefix: "loom-hostfx-cfg-" });
  try {
    Deno.mkdirSync(`${tmp}/data`);
    Deno.writeFileSync(`${tmp}/p.wasm`, Deno.readFileSync(HOSTFX));
    const yaml = (files: string, dns = "127.0.0.1:53") =>
      `listeners:
  - { name: http, address: "127.0.0.1:8080", protocol: http }
plugins:
  - name: fx
    path: p.wasm
    dns_server: "${dns}"
    files:
${files}
`;
    const ok = parseConfig(yaml("      - { dir: ./data, as: /data }"), `${tmp}/loom.yaml`, {}, tmp);
    assert.ok(ok.ok, JSON.stringify(ok));
    assert.deepEqual(ok.ok && ok.config.plugins[0].files, [{ dir: `${tmp}/data`, as: "/data" }]);

    const bad = parseConfig(
      yaml("      - { dir: ./data, as: /data }\n      - { dir: ./missing, as: data }"),
      `${tmp}/loom.yaml`,
      {},
      tmp,
    );
    assert.ok(!bad.ok);
    const errs = bad.ok ? [] : bad.errors;
    const missing = errs.find((e) => e.path === "plugins[0].files[1].dir");
    assert.ok(missing, JSON.stringify(errs));
    assert.match(missing.message, /directory not found: .*missing/);
    assert.equal(missing.line, 9);
    const as = errs.find((e) => e.path === "plugins[0].files[1].as");
    assert.match(as?.message ?? "", /absolute path/);

    const twice = parseConfig(
      yaml("      - { dir: ./data, as: /data }\n      - { dir: ./data, as: /data/ }"),
      `${tmp}/loom.yaml`,
      {},
      tmp,
    );
    assert.ok(!twice.ok);
    assert.deepEqual(twice.ok ? [] : twice.errors.map((e) => [e.path, e.line, e.message]), [
      ["plugins[0].files[1].as", 9, '"/data" is already plugins[0].files[0].as'],
    ]);

    const dns = parseConfig(
      yaml("      - { dir: ./data, as: /data }", "dns.example:53"),
      `${tmp}/loom.yaml`,
      {},
      tmp,
    );
    assert.ok(!dns.ok);
    assert.match(dns.ok ? "" : dns.errors[0].message, /must be an IP address/);
    assert.equal(dns.ok ? "" : dns.errors[0].path, "plugins[0].dns_server");
  } finally {
    Deno.removeSync(tmp, { recursive: true });
  }
  return Promise.resolve();
});
