// Shared helpers for the Node peer runners (bullmq.mjs, pgboss.mjs).
//
// Contract of every runner: exactly one JSON line on stdout at the end, all
// logging on stderr, every loop bounded in count and time, non-zero exit with
// {"error": ...} when something goes wrong.
import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import fs from 'node:fs'

const HERE = path.dirname(fileURLToPath(import.meta.url))
export const PEERS_NODE_DIR = process.env.BENCH_PEERS_NODE_DIR ||
  path.resolve(HERE, '..', '.peers', 'node')

export const WORKLOADS = ['enqueue_single', 'enqueue_concurrent', 'enqueue_bulk', 'drain', 'latency']

// Libraries sometimes print with console.log; stdout is reserved for the
// single result line, so route every console method to stderr.
for (const m of ['log', 'info', 'debug', 'warn']) {
  console[m] = (...args) => process.stderr.write(args.map(String).join(' ') + '\n')
}

export function log (...args) {
  process.stderr.write(`[${new Date().toISOString()}] ` + args.map(String).join(' ') + '\n')
}

// Load a peer package from bench/.peers/node (never from the project).
export function requirePeer (name) {
  const pkg = path.join(PEERS_NODE_DIR, 'package.json')
  if (!fs.existsSync(pkg)) {
    throw new Error(`peer packages not installed (${PEERS_NODE_DIR}); run bench/peers/setup.sh`)
  }
  return createRequire(pkg)(name)
}

export function peerVersion (name) {
  try {
    const p = path.join(PEERS_NODE_DIR, 'node_modules', name, 'package.json')
    return JSON.parse(fs.readFileSync(p, 'utf8')).version
  } catch {
    return null
  }
}

function num (v, flag, { integer = false, min = 0 } = {}) {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min) {
    throw new Error(`invalid value for --${flag}: ${v}`)
  }
  return n
}

export function parseCli (argv = process.argv.slice(2)) {
  const { values } = parseArgs({
    args: argv,
    options: {
      workload: { type: 'string' },
      jobs: { type: 'string' },
      concurrency: { type: 'string' },
      rate: { type: 'string' },
      duration: { type: 'string' },
      'batch-size': { type: 'string' },
      'poll-interval': { type: 'string' },
      timeout: { type: 'string' },
      help: { type: 'boolean', short: 'h' }
    },
    strict: true
  })
  if (values.help) return { help: true }
  const workload = values.workload
  if (!WORKLOADS.includes(workload)) {
    throw new Error(`--workload must be one of ${WORKLOADS.join(', ')}`)
  }
  return {
    workload,
    jobs: num(values.jobs, 'jobs', { integer: true, min: 1 }),
    concurrency: num(values.concurrency, 'concurrency', { integer: true, min: 1 }),
    rate: num(values.rate, 'rate', { min: 0.1 }),
    duration: num(values.duration, 'duration', { min: 0.1 }),
    batchSize: num(values['batch-size'], 'batch-size', { integer: true, min: 1 }),
    pollInterval: num(values['poll-interval'], 'poll-interval', { min: 0.001 }),
    timeout: num(values.timeout, 'timeout', { min: 1 })
  }
}

export const USAGE = `flags: --workload {${WORKLOADS.join('|')}} --jobs N [--concurrency C]
       [--rate R] [--duration S] [--batch-size B] [--poll-interval S] [--timeout S]`

let emitted = false

// Print the one result line and exit.
export function emit (obj, code = 0) {
  if (!emitted) {
    emitted = true
    process.stdout.write(JSON.stringify(obj) + '\n')
  }
  // Give stdout a moment to flush before a hard exit (open sockets may keep
  // the loop alive otherwise).
  process.exitCode = code
  setTimeout(() => process.exit(code), 50).unref()
}

export function fail (base, err, code = 1) {
  const message = err instanceof Error ? err.message : String(err)
  if (err instanceof Error && err.stack) log(err.stack)
  emit({ ...base, error: message }, code)
}

// Hard wall-clock bound for the whole run: whatever happens, the process
// prints an error line and exits once `seconds` have passed.
export function watchdog (base, seconds) {
  const t = setTimeout(() => {
    log(`watchdog: run exceeded ${seconds}s, aborting`)
    if (!emitted) {
      emitted = true
      process.stdout.write(JSON.stringify({ ...base, error: `timeout: run exceeded ${seconds}s` }) + '\n')
    }
    process.exit(3)
  }, seconds * 1000)
  t.unref()
  return t
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// Wall-clock milliseconds with sub-millisecond resolution.
export const wallMs = () => performance.timeOrigin + performance.now()

export const monoS = () => performance.now() / 1000

// Nearest-rank percentile of an ascending-sorted array.
export function percentile (sorted, p) {
  if (sorted.length === 0) return null
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]
}

export function latencySummary (samples) {
  const s = Float64Array.from(samples).sort()
  const r3 = (x) => (x === null ? null : Math.round(x * 1000) / 1000)
  const mean = s.length ? s.reduce((a, b) => a + b, 0) / s.length : null
  return {
    count: s.length,
    p50_ms: r3(percentile(s, 50)),
    p95_ms: r3(percentile(s, 95)),
    p99_ms: r3(percentile(s, 99)),
    max_ms: r3(s.length ? s[s.length - 1] : null),
    mean_ms: r3(mean)
  }
}

// Send round(rate*duration) jobs one at a time on a fixed schedule
// (i-th job due at start + i/rate; no catch-up bursts are skipped, a late
// sender simply sends immediately). Bounded: gives up sending once
// duration + 10s has elapsed.
export async function pacedSend (rate, duration, sendOne) {
  const total = Math.max(1, Math.round(rate * duration))
  const start = performance.now()
  const hardStop = start + (duration + 10) * 1000
  let sent = 0
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate
    const now = performance.now()
    if (now > hardStop) break
    if (due > now) await sleep(due - now)
    await sendOne(i)
    sent++
  }
  return { sent, seconds: (performance.now() - start) / 1000 }
}

// Poll `predicate` every `everyMs` until it returns true or `seconds` pass.
export async function waitFor (predicate, seconds, everyMs = 10) {
  const deadline = performance.now() + seconds * 1000
  while (performance.now() < deadline) {
    if (await predicate()) return true
    await sleep(everyMs)
  }
  return Boolean(await predicate())
}

export function rateOf (jobs, seconds) {
  return seconds > 0 ? Math.round((jobs / seconds) * 10) / 10 : null
}

export function round4 (x) {
  return Math.round(x * 10000) / 10000
}
