/**
 * Embeds the dashboard's files (src/admin/dashboard/: index.html, style.css,
 * app.js) into src/admin/dashboard/assets.ts as strings, so the bundle and the
 * compiled binary carry them and nothing is read or built at run time.
 * src/admin/dashboard/assets_test.ts fails when the generated file is stale.
 *
 *   deno task dashboard
 */
import { dashboardAssetsSource } from "../src/admin/dashboard/generate.ts";

const out = new URL("../src/admin/dashboard/assets.ts", import.meta.url);
Deno.writeTextFileSync(out, dashboardAssetsSource());
// In the repository's format, so `deno fmt --check` passes on it.
await new Deno.Command(Deno.execPath(), { args: ["fmt", "-q", out.pathname] }).output();
console.log(`wrote ${out.pathname}`);
