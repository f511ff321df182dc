/**
 * The deployment files agree with Loom and with each other: the Kubernetes ConfigMap's config validates
 * (admin beyond loopback, so authenticated) and its ports are the ones the Deployment's probes and the
 * Service use; the Dockerfile's HEALTHCHECK command really tells a healthy admin API from none, and it and
 * the systemd unit start the bundle with the flags it needs, as do the npm launcher and the deno.json tasks;
 * the unit keeps its hardening.
 */
import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { itest, startLoom, yamlOf } from "./helpers.ts";
import { parseConfig } from "../src/config/mod.ts";
import { BUNDLE_SHEBANG } from "../scripts/bundle.ts";
import { capture, LOOM_V8_FLAGS, ROOT } from "../scripts/dist_common.ts";

// deno-lint-ignore no-explicit-any
type Doc = any;

function manifests(): Doc[] {
  const dir = `${ROOT}deploy/kubernetes`;
  return [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".yaml")).sort((a, b) =>
    a.name.localeCompare(b.name)
  ).flatMap((e) => parseAllDocuments(Deno.readTextFileSync(`${dir}/${e.name}`)).map((d) => d.toJS()));
}

/** The flags of the bundle's shebang (`--allow-all --unstable-net --v8-flags=... --no-config`). */
const BUNDLE_FLAGS = BUNDLE_SHEBANG.trim().split(/\s+/).slice(4);

Deno.test("deploy: Kubernetes config validates; probes, ports, Service and PDB line up", () => {
  const docs = manifests();
  const kind = (k: string) => docs.filter((d) => d?.kind === k);
  const [cm] = kind("ConfigMap");
  const [dep] = kind("Deployment");
  const [svc] = kind("Service");
  const [pdb] = kind("PodDisruptionBudget");
  assert.ok(cm && dep && svc && pdb, "configmap, deployment, service and pdb manifests");
  const kustomization = docs.find((d) => d?.kind === "Kustomization");
  assert.deepEqual(kustomization.resources.sort(), [
    "configmap.yaml",
    "deployment.yaml",
    "pdb.yaml",
    "service.yaml",
  ]);

  const r = parseConfig(cm.data["loom.yaml"], "loom.yaml", {
    LOOM_ADMIN_TOKEN: "k8s-secret-token-0123456789",
  });
  assert.ok(r.ok, r.ok ? "" : JSON.stringify(r.errors));
  assert.deepEqual(r.runErrors, [], "loom run would refuse the config");
  const port = (address: string) => Number(address.slice(address.lastIndexOf(":") + 1));

  const pod = dep.spec.template.spec;
  const c = pod.containers[0];
  const ports = new Map(c.ports.map((p: Doc) => [p.name, p.containerPort]));
  assert.equal(ports.get("admin"), port(r.config.admin.address));
  assert.equal(ports.get("http"), port(r.config.listeners[0].address));
  assert.deepEqual([c.readinessProbe.httpGet.path, c.readinessProbe.httpGet.port], ["/ready", "admin"]);
  assert.deepEqual([c.livenessProbe.httpGet.path, c.livenessProbe.httpGet.port], ["/health", "admin"]);
  assert.ok(
    pod.terminationGracePeriodSeconds * 1000 > r.config.drain_timeout + 5000,
    "the grace period covers drain_timeout and the preStop pause",
  );
  assert.equal(
    c.env.find((e: Doc) => e.name === "LOOM_ADMIN_TOKEN").valueFrom.secretKeyRef.name,
    "loom-admin",
  );
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.equal(c.securityContext.readOnlyRootFilesystem, true);
  assert.deepEqual(c.securityContext.capabilities.drop, ["ALL"]);
  assert.ok(c.volumeMounts.some((m: Doc) => m.mountPath === "/etc/loom"), "the config at /etc/loom");
  assert.ok(c.volumeMounts.some((m: Doc) => m.mountPath === "/var/cache/loom"), "a writable DENO_DIR");

  const labels = dep.spec.template.metadata.labels;
  assert.deepEqual(dep.spec.selector.matchLabels, labels);
  assert.deepEqual(svc.spec.selector, labels);
  assert.deepEqual(pdb.spec.selector.matchLabels, labels);
  assert.equal(svc.spec.ports[0].targetPort, "http");
});

/** The JSON array of the Dockerfile's instruction `name` (HEALTHCHECK: its CMD), continuation lines joined. */
function dockerJson(name: string): string[] {
  const text = Deno.readTextFileSync(`${ROOT}Dockerfile`).replaceAll("\\\n", " ");
  const line = text.split("\n").find((l) => l.startsWith(name + " "));
  assert.ok(line, `Dockerfile has no ${name}`);
  return JSON.parse(line.slice(line.indexOf("[")));
}

itest(
  "deploy: the Dockerfile's HEALTHCHECK tells a live admin /health from none; non-root; bundle flags",
  async () => {
    const dockerfile = Deno.readTextFileSync(`${ROOT}Dockerfile`);
    const user = dockerfile.match(/^USER (\S+)/m)?.[1];
    assert.ok(user && !/^(0|root)(:|$)/.test(user), `runs as ${user}`);
    assert.match(dockerfile, /^HEALTHCHECK .*\n?.*CMD \[/m);
    const entry = dockerJson("ENTRYPOINT");
    assert.deepEqual(entry.slice(1, 2 + BUNDLE_FLAGS.length), ["run", ...BUNDLE_FLAGS]);
    assert.equal(entry.at(-1), "/opt/loom/loom.js");

    const [, ...check] = dockerJson("HEALTHCHECK");
    const loom = await startLoom(yamlOf({ endpoints: ["127.0.0.1:1"] }));
    try {
      const live = await capture(Deno.execPath(), check, { env: { LOOM_HEALTH_URL: loom.admin("/health") } });
      assert.equal(live.code, 0, live.stderr);
      const gone = await capture(Deno.execPath(), check, {
        env: { LOOM_HEALTH_URL: loom.admin("/nothing-here") },
      });
      assert.equal(gone.code, 1, "a 404 is unhealthy");
    } finally {
      await loom.close();
    }
    const down = await capture(Deno.execPath(), check, {
      env: { LOOM_HEALTH_URL: "http://127.0.0.1:1/health" },
    });
    assert.equal(down.code, 1, "no admin API is unhealthy");
  },
);

Deno.test("deploy: the systemd unit runs the bundle with its flags, hardened", () => {
  const unit = Deno.readTextFileSync(`${ROOT}deploy/systemd/loom.service`);
  const directives = new Map<string, string[]>();
  for (const line of unit.split("\n")) {
    const m = line.match(/^(\w+)=(.*)$/);
    if (m) directives.set(m[1], [...directives.get(m[1]) ?? [], m[2]]);
  }
  const one = (k: string) => directives.get(k)?.at(-1);
  const exec = one("ExecStart")!.split(" ");
  assert.deepEqual(exec.slice(1, 2 + BUNDLE_FLAGS.length), ["run", ...BUNDLE_FLAGS]);
  assert.deepEqual(exec.slice(-5), ["--no-config", "/opt/loom/loom.js", "run", "-c", "/etc/loom/loom.yaml"]);
  assert.equal(one("ExecReload"), "/bin/kill -HUP $MAINPID");
  const hardening = {
    DynamicUser: "yes",
    CapabilityBoundingSet: "CAP_NET_BIND_SERVICE",
    AmbientCapabilities: "CAP_NET_BIND_SERVICE",
    ProtectSystem: "strict",
    NoNewPrivileges: "yes",
    PrivateTmp: "yes",
    ProtectHome: "yes",
    KillMode: "mixed",
  };
  assert.deepEqual(Object.fromEntries(Object.keys(hardening).map((k) => [k, one(k)])), hardening);
  assert.equal(directives.has("MemoryDenyWriteExecute"), false, "V8 needs writable executable memory");
});

Deno.test("deploy: the npm launcher and the deno.json tasks run Loom with the bundle's flags", () => {
  assert.ok(BUNDLE_FLAGS.includes(LOOM_V8_FLAGS), BUNDLE_SHEBANG);
  // packaging/npm/bin/loom: `const args = ["run", ...flags, bundle, ...process.argv.slice(2)]`.
  const launcher = Deno.readTextFileSync(`${ROOT}packaging/npm/bin/loom`);
  const list = /const args = \[([^\]]*)\]/.exec(launcher)?.[1] ?? "";
  const strings = [...list.matchAll(/"([^"]*)"/g)].map((m) => m[1]);
  assert.deepEqual(strings, ["run", ...BUNDLE_FLAGS]);
  const tasks = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).tasks;
  for (const name of ["start", "loom"]) {
    const words = (tasks[name] as string).split(/\s+/);
    assert.ok(words.includes(LOOM_V8_FLAGS), `deno task ${name}: ${tasks[name]}`);
  }
});
