/**
 * Reading a directory of Kubernetes manifests: every `*.yaml`, `*.yml` and
 * `*.json` file under it (recursively, hidden entries skipped, in name order),
 * each possibly holding several YAML documents or a `kind: List`. Objects of
 * the kinds Loom reads are kept (namespaced ones without a namespace go to
 * `default`, as `kubectl apply` would put them); a document that does not
 * parse is reported and skipped, never fatal.
 *
 * @module
 */
import { parseAllDocuments } from "yaml";
import { API_PATHS, emptyResources, type K8sObject, type Kind, KINDS, type ResourceSet } from "./types.ts";

/** A manifest problem: the file and what is wrong. */
export interface ManifestProblem {
  file: string;
  message: string;
}

/** The kept objects and the problems met. */
export interface ManifestRead {
  resources: ResourceSet;
  problems: ManifestProblem[];
  /** The files read, for the config digest. */
  files: string[];
}

const EXT = /\.(ya?ml|json)$/i;

async function listFiles(dir: string, out: string[]): Promise<void> {
  const entries: Deno.DirEntry[] = [];
  for await (const e of Deno.readDir(dir)) if (!e.name.startsWith(".")) entries.push(e);
  entries.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  for (const e of entries) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) await listFiles(p, out);
    else if (EXT.test(e.name)) out.push(p);
  }
}

/** Adds `o` (and a List's items) to `into`; anything else is a problem. */
function take(o: unknown, into: ResourceSet, problem: (m: string) => void): void {
  if (o === null || o === undefined) return; // an empty document
  if (typeof o !== "object" || Array.isArray(o)) return problem("a document is not a mapping");
  const obj = o as K8sObject & { items?: unknown[] };
  if (typeof obj.kind === "string" && obj.kind.endsWith("List") && Array.isArray(obj.items)) {
    for (const item of obj.items) take(item, into, problem);
    return;
  }
  const kind = obj.kind as Kind;
  if (!KINDS.includes(kind)) return; // other kinds (Deployments, ConfigMaps...) are not Loom's
  if (typeof obj.metadata?.name !== "string" || obj.metadata.name === "") {
    return problem(`a ${kind} has no metadata.name`);
  }
  if (API_PATHS[kind].namespaced) obj.metadata.namespace ??= "default";
  into[kind].push(obj);
}

/** Reads the manifests under `dir`; a missing or unreadable directory is a problem, not an exception. */
export async function readManifests(dir: string): Promise<ManifestRead> {
  const resources = emptyResources();
  const problems: ManifestProblem[] = [];
  const files: string[] = [];
  try {
    await listFiles(dir, files);
  } catch (e) {
    problems.push({ file: dir, message: `cannot read the manifests directory: ${(e as Error).message}` });
    return { resources, problems, files };
  }
  for (const file of files) {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (e) {
      problems.push({ file, message: (e as Error).message });
      continue;
    }
    parseManifestText(text, file, resources, problems);
  }
  return { resources, problems, files };
}

/** Parses one file's text (multi-document YAML or JSON) into `into`. */
export function parseManifestText(
  text: string,
  file: string,
  into: ResourceSet,
  problems: ManifestProblem[],
): void {
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) {
      problems.push({ file, message: `YAML: ${doc.errors[0].message.split("\n")[0]}` });
      continue;
    }
    take(doc.toJS(), into, (message) => problems.push({ file, message }));
  }
}
