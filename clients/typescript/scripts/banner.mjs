// Heads the generated types with where they come from, so nobody edits them by hand.
import { readFileSync, writeFileSync } from "node:fs";

const file = process.argv[2];
const banner =
  "// Generated from openapi.json (the Conveyor API's document) by `npm run gen:api`;\n" +
  "// do not edit. A test fails when this file and the document drift apart.\n";
const text = readFileSync(file, "utf8");
if (!text.startsWith(banner)) writeFileSync(file, banner + text);
