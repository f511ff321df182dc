import assert from "node:assert/strict";
import { DASHBOARD_ASSETS } from "./assets.ts";
import { DASHBOARD_FILES } from "./generate.ts";

Deno.test("dashboard: assets.ts embeds the current index.html, style.css and app.js (run `deno task dashboard`)", () => {
  assert.deepEqual(Object.keys(DASHBOARD_ASSETS).sort(), Object.keys(DASHBOARD_FILES).sort());
  for (const [name, type] of Object.entries(DASHBOARD_FILES)) {
    const a = DASHBOARD_ASSETS[name as keyof typeof DASHBOARD_ASSETS];
    assert.equal(a.type, type);
    assert.ok(
      a.body === Deno.readTextFileSync(new URL(name, import.meta.url)),
      `src/admin/dashboard/assets.ts has an old ${name}: run \`deno task dashboard\``,
    );
  }
});

Deno.test("dashboard: the page loads nothing from another origin", () => {
  for (const name of Object.keys(DASHBOARD_FILES)) {
    const text = Deno.readTextFileSync(new URL(name, import.meta.url));
    assert.doesNotMatch(text, /(src|href)\s*=\s*["']?(https?:)?\/\//i, name);
    assert.doesNotMatch(text, /@import|url\(\s*["']?https?:/i, name);
  }
});
