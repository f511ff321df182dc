import assert from "node:assert/strict";
import { Errno } from "./abi.ts";
import { GuestMemory } from "./memory.ts";
import { MAX_FILE, Sandbox } from "./preopens.ts";
import { CallClock } from "./timeslice.ts";
import { wasiFileFunctions } from "./wasi_files.ts";

/** A directory tree: data/{a.txt, b.txt, sub/c.txt, out -> ../secret}, reached through a symlink `via`. */
function tree(): { tmp: string; data: string } {
  const tmp = Deno.makeTempDirSync({ prefix: "loom-wasi-files-" });
  Deno.mkdirSync(`${tmp}/data/sub`, { recursive: true });
  Deno.writeTextFileSync(`${tmp}/data/a.txt`, "0123456789");
  Deno.writeTextFileSync(`${tmp}/data/b.txt`, "b");
  Deno.writeTextFileSync(`${tmp}/data/sub/c.txt`, "c");
  Deno.writeTextFileSync(`${tmp}/secret`, "s");
  Deno.symlinkSync(`${tmp}/secret`, `${tmp}/data/out`);
  Deno.symlinkSync(`${tmp}/data`, `${tmp}/via`);
  return { tmp, data: `${tmp}/via` };
}

/** The file calls over a fresh memory; `call` passes numbers and BigInts as the import would. */
function wasi(sandbox: Sandbox) {
  const memory = new WebAssembly.Memory({ initial: 1 });
  const mem = new GuestMemory(new CallClock(50));
  mem.attach(memory, () => 0);
  const fns = wasiFileFunctions(mem, sandbox) as unknown as Record<string, (...a: unknown[]) => number>;
  const enc = new TextEncoder();
  const dv = () => new DataView(memory.buffer);
  const PATH = 1024, OUT = 2048, BUF = 4096;
  const open = (fd: number, path: string, oflags = 0, rights = 2n, fdflags = 0) => {
    const p = enc.encode(path);
    new Uint8Array(memory.buffer).set(p, PATH);
    const err = fns.path_open(fd, 1, PATH, p.length, oflags, rights, 0n, fdflags, OUT);
    return { err, fd: dv().getUint32(OUT, true) };
  };
  /** fd_read or fd_pread (with `offset`) of up to `n` bytes, as text. */
  const read = (fd: number, n: number, offset?: bigint) => {
    dv().setUint32(OUT + 8, BUF, true);
    dv().setUint32(OUT + 12, n, true);
    const err = offset === undefined
      ? fns.fd_read(fd, OUT + 8, 1, OUT)
      : fns.fd_pread(fd, OUT + 8, 1, offset, OUT);
    const got = dv().getUint32(OUT, true);
    return { err, text: new TextDecoder().decode(new Uint8Array(memory.buffer, BUF, err === 0 ? got : 0)) };
  };
  /** fd_readdir from `cookie` into a buffer of `size`: the bytes used and the whole names in it. */
  const readdir = (fd: number, size: number, cookie = 0n) => {
    const err = fns.fd_readdir(fd, BUF, size, cookie, OUT);
    const used = dv().getUint32(OUT, true);
    const names: string[] = [];
    for (let o = 0; o + 24 <= used;) {
      const n = dv().getUint32(BUF + o + 16, true);
      if (o + 24 + n > used) break;
      names.push(new TextDecoder().decode(new Uint8Array(memory.buffer, BUF + o + 24, n)));
      o += 24 + n;
    }
    return { err, used, names };
  };
  return { fns, open, read, readdir, dv, OUT };
}

Deno.test("preopens: paths stay inside their directory, symlinks resolved", () => {
  const { tmp, data } = tree();
  try {
    const s = new Sandbox([{ dir: data, as: "/data/" }, { dir: `${data}/sub`, as: "/data/sub" }]);
    assert.equal(s.preopens[0].guest, "/data");
    assert.equal(s.preopens[0].host, Deno.realPathSync(`${tmp}/data`)); // the directory's own symlink resolved
    assert.equal(s.find("/data/sub/c.txt")?.root.guest, "/data/sub"); // the longest match
    assert.deepEqual(s.readFile("/data/a.txt"), new TextEncoder().encode("0123456789"));
    assert.equal(s.readFile("/data/out"), "denied");
    assert.equal(s.readFile("/data/../secret"), "denied");
    assert.equal(s.readFile("/data/sub/../../secret"), "denied");
    assert.equal(s.readFile("/data/none"), "not_found");
    assert.equal(s.readFile("/data/sub"), "not_file");
    assert.equal(s.readFile("/elsewhere/a.txt"), "denied");
    assert.deepEqual(s.resolve(s.preopens[0], "/etc/passwd"), { refused: "denied" });
    assert.ok(MAX_FILE >= 16 * 1024 * 1024);
  } finally {
    Deno.removeSync(tmp, { recursive: true });
  }
});

Deno.test("wasi files: read-only opens, reads, seeks, stats, readdir cookies, refusals", () => {
  const { tmp, data } = tree();
  try {
    const { fns, open, read, readdir, dv, OUT } = wasi(new Sandbox([{ dir: data, as: "/data" }]));
    // The preopen is fd 3; fd 4 is none.
    assert.equal(fns.fd_prestat_get(3, OUT), Errno.SUCCESS);
    assert.equal(dv().getUint32(OUT + 4, true), 5);
    assert.equal(fns.fd_prestat_get(4, OUT), Errno.BADF);

    const a = open(3, "a.txt");
    assert.equal(a.err, Errno.SUCCESS);
    assert.deepEqual(read(a.fd, 4), { err: 0, text: "0123" });
    assert.deepEqual(read(a.fd, 4), { err: 0, text: "4567" });
    assert.deepEqual(read(a.fd, 4, 8n), { err: 0, text: "89" }); // pread leaves the position alone
    assert.equal(fns.fd_tell(a.fd, OUT), 0);
    assert.equal(dv().getBigUint64(OUT, true), 8n);
    assert.equal(fns.fd_seek(a.fd, -3n, 2, OUT), 0); // from the end
    assert.deepEqual(read(a.fd, 10), { err: 0, text: "789" });
    assert.equal(fns.fd_seek(a.fd, -20n, 1, OUT), Errno.INVAL);
    assert.equal(fns.fd_filestat_get(a.fd, 0), 0);
    assert.equal(dv().getUint8(16), 4); // regular file
    assert.equal(dv().getBigUint64(32, true), 10n);
    assert.equal(fns.fd_write(a.fd), Errno.ROFS);
    assert.equal(fns.fd_close(a.fd), 0);
    assert.equal(fns.fd_close(a.fd), Errno.BADF);
    assert.equal(fns.fd_close(3), 0); // a preopen stays
    assert.equal(open(3, "b.txt").err, 0);

    // Subdirectories open as directories; paths under them stay inside the preopen.
    const sub = open(3, "sub", 2);
    assert.equal(sub.err, 0);
    assert.equal(read(sub.fd, 1).err, Errno.ISDIR);
    assert.equal(open(sub.fd, "c.txt").err, 0);
    assert.equal(open(sub.fd, "../a.txt").err, 0);
    assert.equal(open(sub.fd, "../../secret").err, Errno.NOTCAPABLE);
    assert.equal(open(3, "out").err, Errno.NOTCAPABLE);
    assert.equal(open(3, "/etc/passwd").err, Errno.NOTCAPABLE);
    assert.equal(open(3, "none").err, Errno.NOENT);
    assert.equal(open(3, "a.txt", 2).err, Errno.NOTDIR);
    assert.equal(fns.path_filestat_get(3, 1, 0, 0, 0), 0); // "" is the directory itself
    // Writes: create/truncate flags, append, the fd_write right; every writing call.
    assert.equal(open(3, "new.txt", 1).err, Errno.ROFS);
    assert.equal(open(3, "a.txt", 8).err, Errno.ROFS);
    assert.equal(open(3, "a.txt", 0, 2n, 1).err, Errno.ROFS);
    assert.equal(open(3, "a.txt", 0, 64n).err, Errno.ROFS);
    assert.equal(fns.path_unlink_file(3), Errno.ROFS);
    assert.equal(fns.path_create_directory(3), Errno.ROFS);
    assert.equal(fns.path_unlink_file(9), Errno.BADF);
    assert.throws(() => Deno.statSync(`${tmp}/data/new.txt`));

    // readdir: sorted names; a small buffer cuts the last record, the cookie resumes after the whole ones.
    assert.deepEqual(readdir(3, 4096).names, ["a.txt", "b.txt", "out", "sub"]);
    const first = readdir(3, 24 + 5 + 10);
    assert.deepEqual(first.names, ["a.txt"]);
    assert.equal(first.used, 39);
    assert.deepEqual(readdir(3, 4096, 1n).names, ["b.txt", "out", "sub"]);
    assert.deepEqual(readdir(3, 4096, 9n).names, []);
  } finally {
    Deno.removeSync(tmp, { recursive: true });
  }
});

Deno.test("wasi files: no sandbox, no preopens", () => {
  const memory = new WebAssembly.Memory({ initial: 1 });
  const mem = new GuestMemory(new CallClock(50));
  mem.attach(memory, () => 0);
  const fns = wasiFileFunctions(mem, null) as unknown as Record<string, (...a: unknown[]) => number>;
  assert.equal(fns.fd_prestat_get(3, 0), Errno.BADF);
  assert.equal(fns.fd_read(3, 0, 0, 0), Errno.BADF);
  assert.equal(fns.path_open(3, 0, 0, 0, 0, 0n, 0n, 0, 0), Errno.BADF);
});
