/**
 * Test PKI made with openssl in a temp dir: a CA, CA:FALSE leaf certificates
 * (rustls rejects CA:TRUE leaves) for servers and clients, and curl runs.
 */
import assert from "node:assert/strict";

/** Paths of a generated certificate and key. */
export interface CertFiles {
  cert: string;
  key: string;
}

async function openssl(args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, stdout: "null", stderr: "piped" }).output();
  assert.ok(out.success, `openssl ${args[0]}: ${new TextDecoder().decode(out.stderr)}`);
}

/** A CA that signs leaves into `dir`. */
export class TestCa {
  readonly cert: string;
  readonly key: string;
  private constructor(readonly dir: string, readonly name: string) {
    this.cert = `${dir}/${name}.pem`;
    this.key = `${dir}/${name}.key`;
  }

  static async create(dir: string, name = "ca"): Promise<TestCa> {
    const ca = new TestCa(dir, name);
    await openssl([
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "2",
      "-subj",
      `/CN=Loom Test ${name}`,
      "-keyout",
      ca.key,
      "-out",
      ca.cert,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    return ca;
  }

  /** An intermediate CA named `name`, signed by this one. */
  async intermediate(name: string): Promise<TestCa> {
    const ca = new TestCa(this.dir, name);
    await openssl([
      "req",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-subj",
      `/CN=Loom Test ${name}`,
      "-keyout",
      ca.key,
      "-out",
      `${this.dir}/${name}.csr`,
    ]);
    Deno.writeTextFileSync(
      `${this.dir}/${name}.ext`,
      "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
    );
    await openssl([
      "x509",
      "-req",
      "-in",
      `${this.dir}/${name}.csr`,
      "-CA",
      this.cert,
      "-CAkey",
      this.key,
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      `${this.dir}/${name}.ext`,
      "-out",
      ca.cert,
    ]);
    return ca;
  }

  /** A CA:FALSE leaf with subject CN=`cn` and the given SANs ("DNS:x", "IP:1.2.3.4", "URI:..."). */
  async leaf(file: string, cn: string, sans: string[]): Promise<CertFiles> {
    const base = `${this.dir}/${file}`;
    await openssl([
      "req",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-subj",
      `/CN=${cn}`,
      "-keyout",
      `${base}.key`,
      "-out",
      `${base}.csr`,
    ]);
    Deno.writeTextFileSync(
      `${base}.ext`,
      `basicConstraints=critical,CA:FALSE\nsubjectAltName=${sans.join(",")}\n`,
    );
    await openssl([
      "x509",
      "-req",
      "-in",
      `${base}.csr`,
      "-CA",
      this.cert,
      "-CAkey",
      this.key,
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      `${base}.ext`,
      "-out",
      `${base}.pem`,
    ]);
    return { cert: `${base}.pem`, key: `${base}.key` };
  }
}

/** The `listeners:` YAML of an `https` listener on \${PORT} that verifies client certificates against `clientCa`. */
export function mtlsListenerYaml(
  server: CertFiles,
  clientCa: string,
  clientAuth: "require" | "optional",
): string {
  return `listeners:
  - name: mtls
    address: "127.0.0.1:\${PORT}"
    protocol: https
    tls:
      cert_file: "${server.cert}"
      key_file: "${server.key}"
      client_auth: ${clientAuth}
      client_ca_file: "${clientCa}"
`;
}

/** Result of a curl run. */
export interface CurlResult {
  ok: boolean;
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs curl (bounded to 10 s). */
export async function curl(args: string[]): Promise<CurlResult> {
  const out = await new Deno.Command("curl", {
    args: ["-sS", "--max-time", "10", ...args],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  return {
    ok: out.success,
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}
