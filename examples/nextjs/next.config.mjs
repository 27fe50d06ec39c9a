import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

/** @type {import('next').NextConfig} */
const nextConfig = {
  // @conveyor/client is linked from ../../clients/typescript: trace files from the repository's
  // root so that a standalone build would include it.
  outputFileTracingRoot: path.join(here, "..", ".."),
  // `next build` type-checks; this example has no ESLint setup of its own.
  eslint: { ignoreDuringBuilds: true },
};

export default nextConfig;
