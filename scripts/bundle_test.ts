import assert from "node:assert/strict";
import { asciiOnly } from "./bundle.ts";

Deno.test("asciiOnly: the same program in ASCII (strings, templates, regular expressions, comments)", () => {
  const src = `// ≤ 60 MiB — a comment
const a = "p99 ≤ 1.5× → µs";
const b = \`§ \${a} ☃\`;
const c = /[→≤]+/u.test("→≤") && /😀/u.test("x😀") && !/^.$/.test("😀") && /^.$/u.test("😀");
const d = "😀".length;
return [a, b, c, d];`;
  const out = asciiOnly(src);
  assert.doesNotMatch(out, /[\u0080-\uffff]/);
  assert.deepEqual(new Function(out)(), new Function(src)());
  assert.deepEqual(new Function(out)(), ["p99 ≤ 1.5× → µs", "§ p99 ≤ 1.5× → µs ☃", true, 2]);
});

Deno.test("asciiOnly: refuses a backslash before a non-ASCII character (its escape would change meaning)", () => {
  assert.throws(() => asciiOnly(`const s = "\\→";`), /backslash before a non-ASCII/);
});
