import assert from "node:assert/strict";
import { checkLayers } from "../scripts/check_layers.ts";

Deno.test("layers: src/ folders import downward only", async () => {
  const { violations, unknown } = await checkLayers(new URL("../src", import.meta.url).pathname);
  assert.deepEqual(unknown, [], "folders missing from LAYERS in scripts/check_layers.ts");
  assert.deepEqual(
    violations.map((v) => `${v.file}:${v.line}: ${v.from} imports ${v.to} (${v.specifier})`),
    [],
  );
});

Deno.test("layers: an upward import is reported with its file and line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(dir + "/core");
    await Deno.mkdir(dir + "/gateway");
    await Deno.writeTextFile(dir + "/gateway/g.ts", "export const g = 1;\n");
    await Deno.writeTextFile(
      dir + "/core/c.ts",
      '// top\nimport { g } from "../gateway/g.ts";\nexport const c = g;\n',
    );
    const { violations } = await checkLayers(dir);
    assert.equal(violations.length, 1);
    assert.deepEqual(
      [violations[0].file, violations[0].line, violations[0].from, violations[0].to],
      ["src/core/c.ts", 2, "core", "gateway"],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
