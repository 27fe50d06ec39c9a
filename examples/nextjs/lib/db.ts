// One node-postgres pool per server process. DATABASE_URL is read on first use, so that
// `next build` works without a database.
import pg from "pg";

let pool: pg.Pool | undefined;

export function db(): pg.Pool {
  if (pool === undefined) {
    const connectionString = process.env.DATABASE_URL;
    if (!connectionString) throw new Error("DATABASE_URL is not set");
    pool = new pg.Pool({ connectionString, max: 5 });
    // An idle connection that the server closes (a restart, a failover) must not crash the
    // process: the pool replaces it on the next query.
    pool.on("error", (error) => console.error("idle database connection lost:", error.message));
  }
  return pool;
}

/** The endpoint's signing secrets: CONVEYOR_SECRET, space-separated during a rotation. */
export function conveyorSecrets(): string[] {
  return (process.env.CONVEYOR_SECRET ?? "").split(" ").filter((s) => s !== "");
}
