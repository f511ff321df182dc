/**
 * Paths in a config resolve against the config file's directory: `loom run -c /tmp/.../x/loom.yaml` from
 * another working directory finds its plugin, its listener's certificate and key and its upstream's CA
 * through relative paths.
 */
import assert from "node:assert/strict";
import { itest } from "./helpers.ts";
import { TestCa } from "./tls_util.ts";
import { freePort, ROOT, startLoomProcess, waitForOk } from "../scripts/dist_common.ts";

itest(
  "config paths: loom run -c /abs/x/loom.yaml from elsewhere, relative plugin and certificate paths",
  async () => {
    const tmp = Deno.makeTempDirSync({ prefix: "loom-paths-" });
    try {
      const x = `${tmp}/x`;
      Deno.mkdirSync(`${x}/certs`, { recursive: true });
      Deno.mkdirSync(`${x}/plugins`);
      Deno.mkdirSync(`${tmp}/elsewhere`);
      const ca = await TestCa.create(`${x}/certs`);
      await ca.leaf("server", "localhost", ["DNS:localhost", "IP:127.0.0.1"]);
      Deno.copyFileSync(`${ROOT}plugins/add-headers/add_headers.wasm`, `${x}/plugins/add_headers.wasm`);
      const [http, https, admin, echo] = [freePort(), freePort(), freePort(), freePort()];
      Deno.writeTextFileSync(
        `${x}/loom.yaml`,
        `listeners:
  - { name: http, address: "127.0.0.1:${http}", protocol: http }
  - { name: tls, address: "127.0.0.1:${https}", protocol: https, tls: { cert_file: certs/server.pem, key_file: ./certs/server.key } }
admin: { address: "127.0.0.1:${admin}" }
demo: { echo: { address: "127.0.0.1:${echo}" } }
access_log: { enabled: false }
upstreams:
  - { name: echo, endpoints: ["127.0.0.1:${echo}"] }
  - name: self-tls
    endpoints: ["127.0.0.1:${https}"]
    tls: { ca_file: certs/ca.pem, server_name: localhost }
plugins:
  - name: add-headers
    path: plugins/add_headers.wasm
    phase: on_response_headers
    config: ">x-served-by: loom"
routes:
  - { id: echo, path: /echo/*, strip_prefix: true, upstream: echo, plugins: [add-headers] }
  - { id: loop, path: /loop/*, strip_prefix: true, upstream: self-tls }
`,
      );
      const loom = startLoomProcess(
        Deno.execPath(),
        ["run", "-A", "--unstable-net", `${ROOT}src/cli/main.ts`, "run", "-c", `${x}/loom.yaml`],
        { cwd: `${tmp}/elsewhere` },
      );
      try {
        // Plain HTTP in, TLS (verified with the relative CA file) to Loom's own https listener, then the echo.
        const r = await waitForOk(`http://127.0.0.1:${http}/loop/echo/hello`, loom, 30_000);
        assert.equal(JSON.parse(r.body).path, "/hello");
        assert.equal(r.headers.get("x-served-by"), "loom");
        const client = Deno.createHttpClient({ caCerts: [Deno.readTextFileSync(ca.cert)] });
        try {
          const direct = await fetch(`https://localhost:${https}/echo/direct`, { client });
          assert.equal(direct.status, 200);
          assert.equal(JSON.parse(await direct.text()).path, "/direct");
        } finally {
          client.close();
        }
        const st = await loom.stop(20_000);
        assert.equal(st.code, 0, loom.output());
      } finally {
        await loom.stop(1_000);
      }
    } finally {
      Deno.removeSync(tmp, { recursive: true });
    }
  },
  { needs: ["openssl"] },
);
