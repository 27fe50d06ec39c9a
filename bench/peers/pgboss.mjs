#!/usr/bin/env node
// pg-boss (PostgreSQL) runner for Conveyor's side-by-side benchmark.
//
//   node bench/peers/pgboss.mjs --workload drain --jobs 2000 [--batch-size 100]
//
// Uses database bench_pgboss (created if missing) and drops/recreates the
// pg-boss schema at the start of every run. Prints one JSON line on stdout.
//
// pg-boss 10.x is the newest line that runs on Node 20 (11+ needs Node 22).
// In 10.x each work() call is one polling loop: it fetches up to batchSize
// jobs, awaits the handler once with that array, then sleeps until
// pollingIntervalSeconds has passed since the fetch started (minimum 0.5 s).
// One loop with batchSize 1 therefore tops out at 2 jobs/s; concurrency in
// 10.x comes from calling work() several times (the maintainer's advice once
// teamSize was removed) or from a larger batchSize. --concurrency is the number
// of work() loops in this one process.
import {
  parseCli, USAGE, emit, fail, watchdog, log, requirePeer, peerVersion,
  sleep, wallMs, monoS, latencySummary, pacedSend, waitFor, rateOf, round4
} from './_common.mjs'

const PEER = 'pgboss'
const QUEUE = 'conveyor_bench'
const SCHEMA = 'pgboss'
const BATCH = 1000 // insert() batch size for enqueue_bulk and drain pre-fill
const DEFAULT_POLL = 0.5 // seconds; the smallest interval pg-boss accepts

function pgUrls () {
  const server = process.env.BENCH_PG_SERVER || 'postgres://postgres@127.0.0.1:5432'
  const dbname = process.env.BENCH_PGBOSS_DB || 'bench_pgboss'
  return { admin: `${server}/postgres`, bench: `${server}/${dbname}`, dbname }
}

async function resetDatabase (pg) {
  const { admin, bench, dbname } = pgUrls()
  if (!/^bench_[a-z0-9_]+$/.test(dbname)) throw new Error(`refusing to use database ${dbname}`)
  const a = new pg.Client({ connectionString: admin })
  await a.connect()
  try {
    const r = await a.query('SELECT 1 FROM pg_database WHERE datname = $1', [dbname])
    if (r.rowCount === 0) {
      log(`creating database ${dbname}`)
      await a.query(`CREATE DATABASE ${dbname}`)
    }
  } finally {
    await a.end()
  }
  const b = new pg.Client({ connectionString: bench })
  await b.connect()
  try {
    await b.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`)
  } finally {
    await b.end()
  }
  return bench
}

async function main () {
  let args
  try {
    args = parseCli()
  } catch (e) {
    fail({ peer: PEER }, `${e.message}\n${USAGE}`, 2)
    return
  }
  if (args.help) { process.stderr.write(USAGE + '\n'); process.exit(0) }

  const { workload } = args
  const jobs = args.jobs ?? 2000
  const batchSize = args.batchSize ?? 1
  // Default in-flight capacity of ~50 jobs, like the BullMQ runner:
  // 50 loops of 1 job, or 1 loop of 100 jobs for --batch-size 100.
  const concurrency = args.concurrency ?? Math.max(1, Math.ceil(50 / batchSize))
  const pollingIntervalSeconds = args.pollInterval ?? DEFAULT_POLL
  const variant = `batch${batchSize}`
  const base = { peer: PEER, workload }
  if (workload === 'drain' || workload === 'latency') base.variant = variant
  const timeout = args.timeout ?? 240
  watchdog(base, timeout)

  const PgBoss = requirePeer('pg-boss')
  const pg = requirePeer('pg')
  let boss = null

  try {
    const url = await resetDatabase(pg)
    boss = new PgBoss({ connectionString: url, schema: SCHEMA })
    boss.on('error', (e) => log('pg-boss error:', e.message))
    await boss.start()
    await boss.createQueue(QUEUE)
    log(`pg-boss ${peerVersion('pg-boss')} workload=${workload} variant=${variant} ` +
        `work_loops=${concurrency} batchSize=${batchSize} pollingIntervalSeconds=${pollingIntervalSeconds}`)

    const workOptions = { batchSize, pollingIntervalSeconds }
    const startWorkers = async (handler) => {
      for (let k = 0; k < concurrency; k++) await boss.work(QUEUE, workOptions, handler)
    }

    let result
    if (workload === 'enqueue_single') {
      const t0 = monoS()
      for (let i = 0; i < jobs; i++) await boss.send(QUEUE, { i })
      const seconds = monoS() - t0
      result = { jobs, seconds: round4(seconds), rate: rateOf(jobs, seconds) }
    } else if (workload === 'enqueue_bulk') {
      const t0 = monoS()
      await bulkInsert(boss, jobs)
      const seconds = monoS() - t0
      result = { jobs, seconds: round4(seconds), rate: rateOf(jobs, seconds), batch: BATCH }
    } else if (workload === 'drain') {
      await bulkInsert(boss, jobs)
      const queued = await boss.getQueueSize(QUEUE)
      if (queued !== jobs) throw new Error(`pre-enqueue left ${queued} queued, expected ${jobs}`)

      let handled = 0
      let calls = 0
      const t0 = monoS()
      await startWorkers(async (batch) => { calls++; handled += batch.length })
      // Done when pg-boss itself reports no job left in created/retry/active
      // (completion is written after the handler returns).
      const bound = Math.max(30, timeout - 30)
      const finished = await waitFor(async () => {
        if (handled < jobs) return false
        return (await boss.getQueueSize(QUEUE, { before: 'completed' })) === 0
      }, bound, 20)
      const seconds = monoS() - t0
      if (!finished) {
        throw new Error(`drain did not finish in ${bound}s: handled=${handled} of ${jobs} ` +
          `(one work() loop with batchSize ${batchSize} handles at most ${batchSize / pollingIntervalSeconds} jobs/s)`)
      }
      const completed = await boss.getQueueSize(QUEUE, { before: 'cancelled' }) -
        await boss.getQueueSize(QUEUE, { before: 'completed' })
      if (handled !== jobs || completed !== jobs) {
        throw new Error(`drain inconsistent: handled=${handled} completed=${completed} of ${jobs}`)
      }
      result = {
        jobs,
        seconds: round4(seconds),
        rate: rateOf(jobs, seconds),
        handler_calls: calls,
        work_loops: concurrency,
        batch_size: batchSize,
        polling_interval_s: pollingIntervalSeconds
      }
    } else if (workload === 'latency') {
      const rate = args.rate ?? 50
      const duration = args.duration ?? 10
      const samples = []
      let warm = 0
      await startWorkers(async (batch) => {
        const now = wallMs()
        for (const job of batch) {
          if (job.data.warmup) warm++
          else samples.push(now - job.data.t)
        }
      })
      for (let i = 0; i < 5; i++) await boss.send(QUEUE, { t: wallMs(), warmup: true })
      if (!(await waitFor(() => warm >= 5, 30))) throw new Error('warm-up jobs were not processed')
      await sleep(500)

      const { sent, seconds } = await pacedSend(rate, duration, () => boss.send(QUEUE, { t: wallMs() }))
      const ok = await waitFor(() => samples.length >= sent, 30)
      if (!ok) log(`latency: only ${samples.length}/${sent} jobs processed within grace period`)
      result = {
        ...latencySummary(samples),
        sent,
        target_rate: rate,
        duration,
        send_seconds: round4(seconds),
        work_loops: concurrency,
        batch_size: batchSize,
        polling_interval_s: pollingIntervalSeconds
      }
      if (!ok) result.error = `only ${samples.length} of ${sent} jobs processed`
    }

    const out = { ...base, ...result, version: peerVersion('pg-boss') }
    await stopBoss(boss)
    emit(out, out.error ? 1 : 0)
  } catch (e) {
    await stopBoss(boss)
    fail(base, e)
  }
}

async function bulkInsert (boss, n) {
  for (let start = 0; start < n; start += BATCH) {
    const size = Math.min(BATCH, n - start)
    const batch = new Array(size)
    for (let k = 0; k < size; k++) batch[k] = { name: QUEUE, data: { i: start + k } }
    await boss.insert(batch)
  }
}

async function stopBoss (boss) {
  if (!boss) return
  try {
    await Promise.race([boss.stop({ graceful: false, wait: false }), sleep(5000)])
  } catch (e) {
    log('stop error:', e.message)
  }
}

main().catch((e) => fail({ peer: PEER }, e))
