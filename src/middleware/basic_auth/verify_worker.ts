/**
 * The verification worker of `basic_auth` (see verify.ts): answers each
 * {@link VerifyJob} with whether the password matches, one at a time.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { verifyHash, type VerifyJob, type VerifyResult } from "./verify.ts";

self.onmessage = async (e: MessageEvent<VerifyJob>) => {
  const { id, hash, password } = e.data;
  let r: VerifyResult;
  try {
    r = { id, ok: await verifyHash(hash, password) };
  } catch (err) {
    r = { id, error: String(err) };
  }
  self.postMessage(r);
};
