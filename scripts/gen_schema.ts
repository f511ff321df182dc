/** Writes config/loom.schema.json from the config schema (`deno task schema`). */

import { loomSchema } from "../src/config/schema.ts";
import { schemaText } from "../src/config/json_schema.ts";

const target = new URL("../config/loom.schema.json", import.meta.url);
await Deno.writeTextFile(target, schemaText(loomSchema));
console.log(`wrote ${target.pathname}`);
