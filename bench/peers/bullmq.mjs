#!/usr/bin/env node
// BullMQ (Redis) runner for Conveyor's side-by-side benchmark.
//
//   node bench/peers/bullmq.mjs --workload drain --jobs 2000 [--concurrency 50]
//
// Prints one JSON line on stdout; logs go to stderr. See README.md here.
import {
  parseCli, USAGE, emit, fail, watchdog, log, requirePeer, peerVersion,
  sleep, wallMs, monoS, latencySummary, pacedSend, waitFor, rateOf, round4
} from './_common.mjs'

const PEER = 'bullmq'
const QUEUE = process.env.BENCH_BULLMQ_QUEUE || 'conveyor-bench'
const BATCH = 1000 // addBulk batch size for enqueue_bulk and drain pre-fill
// Completed-job retention: the workers keep a bounded history (BullMQ's documented practice,
// removeOnComplete: {count: 1000}); with BENCH_BULLMQ_REMOVE_ON_COMPLETE=true every job is
// added with the job option removeOnComplete: true (removed as it completes; the issue's
// comparison setting; a worker option takes only {count}/{age}). The result line says which.
const REMOVE_EVERY = process.env.BENCH_BULLMQ_REMOVE_ON_COMPLETE === 'true'
const JOB_OPTS = REMOVE_EVERY ? { removeOnComplete: true } : undefined

function redisConnection () {
  const url = new URL(process.env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379/0')
  const db = Number((url.pathname || '/0').slice(1) || 0)
  return { host: url.hostname, port: Number(url.port || 6379), db }
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
  const concurrency = args.concurrency ?? 50
  const base = { peer: PEER, workload }
  watchdog(base, args.timeout ?? 240)

  const { Queue, Worker } = requirePeer('bullmq')
  const connection = redisConnection()
  const queue = new Queue(QUEUE, { connection })
  queue.on('error', (e) => log('queue error:', e.message))
  // Cleanups run in order: worker(s) first (unshifted), then the queue's keys
  // are removed again so Redis is left as we found it.
  const cleanups = [() => queue.obliterate({ force: true }), () => queue.close()]

  const workerOptions = {
    connection,
    concurrency,
    // Documented production practice: keep a bounded history instead of
    // every finished job (BullMQ "auto-removal of jobs").
    removeOnComplete: { count: 1000 },
    removeOnFail: { count: 5000 },
    autorun: false
  }

  try {
    await queue.waitUntilReady()
    // Fresh state for this queue only (all of its keys), never FLUSHDB.
    await queue.obliterate({ force: true })
    log(`bullmq ${peerVersion('bullmq')} queue=${QUEUE} workload=${workload}`)

    let result
    if (workload === 'enqueue_single') {
      const t0 = monoS()
      for (let i = 0; i < jobs; i++) await queue.add('noop', { i })
      const seconds = monoS() - t0
      result = { jobs, seconds: round4(seconds), rate: rateOf(jobs, seconds) }
    } else if (workload === 'enqueue_concurrent') {
      // `concurrency` callers (default 16), each awaiting its own queue.add one by one
      const callers = args.concurrency ?? 16
      const share = Math.floor(jobs / callers)
      const t0 = monoS()
      await Promise.all(Array.from({ length: callers }, async (_, k) => {
        for (let i = k * share; i < (k + 1) * share; i++) await queue.add('noop', { i })
      }))
      const seconds = monoS() - t0
      const n = share * callers
      result = { jobs: n, seconds: round4(seconds), rate: rateOf(n, seconds), concurrency: callers }
    } else if (workload === 'enqueue_bulk') {
      const t0 = monoS()
      await bulkAdd(queue, jobs)
      const seconds = monoS() - t0
      result = { jobs, seconds: round4(seconds), rate: rateOf(jobs, seconds), batch: BATCH }
    } else if (workload === 'drain') {
      await bulkAdd(queue, jobs)
      const waiting = await queue.getWaitingCount()
      if (waiting !== jobs) throw new Error(`pre-enqueue left ${waiting} waiting, expected ${jobs}`)

      let handled = 0
      let completed = 0
      let failed = 0
      const worker = new Worker(QUEUE, async () => { handled++ }, workerOptions)
      cleanups.unshift(() => worker.close())
      worker.on('error', (e) => log('worker error:', e.message))
      worker.on('failed', (job, err) => { if (failed++ === 0) log('first failure:', err && err.message) })
      let t0
      const done = new Promise((resolve) => {
        worker.on('completed', () => {
          completed++
          if (completed === jobs) resolve(monoS())
        })
      })
      await worker.waitUntilReady()
      t0 = monoS()
      const running = worker.run()
      running.catch((e) => log('worker.run failed:', e.message))
      const bound = Math.max(60, (args.timeout ?? 240) - 30)
      const t1 = await Promise.race([done, sleep(bound * 1000).then(() => null)])
      if (t1 === null) {
        throw new Error(`drain did not finish in ${bound}s: completed=${completed} failed=${failed} of ${jobs}`)
      }
      const seconds = t1 - t0
      const left = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized')
      const remaining = Object.values(left).reduce((a, b) => a + b, 0)
      if (remaining !== 0 || handled !== jobs || failed !== 0) {
        throw new Error(`drain inconsistent: handled=${handled} failed=${failed} remaining=${JSON.stringify(left)}`)
      }
      result = { jobs, seconds: round4(seconds), rate: rateOf(jobs, seconds), concurrency }
    } else if (workload === 'latency') {
      const rate = args.rate ?? 50
      const duration = args.duration ?? 10
      const samples = []
      let warmupLeft = 0
      const worker = new Worker(QUEUE, async (job) => {
        const lat = wallMs() - job.data.t
        if (job.data.warmup) warmupLeft--
        else samples.push(lat)
      }, workerOptions)
      cleanups.unshift(() => worker.close())
      worker.on('error', (e) => log('worker error:', e.message))
      await worker.waitUntilReady()
      const running = worker.run()
      running.catch((e) => log('worker.run failed:', e.message))

      // A few warm-up jobs (not measured) so connection set-up and JIT are
      // not charged to the first samples; then let the worker go idle.
      warmupLeft = 5
      for (let i = 0; i < 5; i++) await queue.add('noop', { t: wallMs(), warmup: true })
      if (!(await waitFor(() => warmupLeft <= 0, 30))) throw new Error('warm-up jobs were not processed')
      await sleep(500)

      const { sent, seconds } = await pacedSend(rate, duration, () => queue.add('noop', { t: wallMs() }, JOB_OPTS))
      const ok = await waitFor(() => samples.length >= sent, 30)
      if (!ok) log(`latency: only ${samples.length}/${sent} jobs processed within grace period`)
      result = {
        ...latencySummary(samples),
        sent,
        target_rate: rate,
        duration,
        send_seconds: round4(seconds),
        concurrency
      }
      if (!ok) result.error = `only ${samples.length} of ${sent} jobs processed`
    }

    const removeOnComplete = REMOVE_EVERY ? 'true (job option)' : 'count:1000 (worker option)'
    const out = { ...base, ...result, version: peerVersion('bullmq'), remove_on_complete: removeOnComplete }
    await closeAll(cleanups)
    emit(out, out.error ? 1 : 0)
  } catch (e) {
    await closeAll(cleanups)
    fail(base, e)
  }
}

async function bulkAdd (queue, n) {
  for (let start = 0; start < n; start += BATCH) {
    const size = Math.min(BATCH, n - start)
    const batch = new Array(size)
    for (let k = 0; k < size; k++) batch[k] = { name: 'noop', data: { i: start + k }, opts: JOB_OPTS }
    await queue.addBulk(batch)
  }
}

async function closeAll (cleanups) {
  for (const c of cleanups) {
    try {
      await Promise.race([c(), sleep(5000)])
    } catch (e) {
      log('cleanup error:', e.message)
    }
  }
}

main().catch((e) => fail({ peer: PEER }, e))
