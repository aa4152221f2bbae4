#!/usr/bin/env node
// query.mjs: the DuckDB batch baseline for kappa's replay_throughput benchmark.
//
// Loads a CSV of transactions into an in-memory DuckDB table once (timed on
// its own, never counted in query speed), then for each thread count runs and
// times the job kappa runs as a stream:
//   dedup:   keep one row per txn_id (the lowest (partition, offset)), drop
//            status = 'cancelled', group by user_id and hour
//            (event_time_ms // 3600000): count(*), sum(amount_cents)
//   nodedup: the same without the dedup
// Each result is materialized in full (CREATE TEMP TABLE r AS ...), and
// dropped between runs. Runs go in rounds, each running every (threads, query)
// case once; rows/s = input rows / best query seconds.
//
//   node query.mjs --csv FILE [--threads 1,2] [--json OUT] [--runs 3] [--warmup 1]
//                  [--dedup-form dupjoin|qualify|argmin]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const HEADER = 'partition,offset,txn_id,user_id,status,amount_cents,currency,event_time_ms';
const COLUMNS = {
  partition: 'INTEGER', offset: 'BIGINT', txn_id: 'VARCHAR', user_id: 'VARCHAR',
  status: 'VARCHAR', amount_cents: 'BIGINT', currency: 'VARCHAR', event_time_ms: 'BIGINT',
};

// The aggregate both queries share, over a row source `src`.
const aggregate = (src) =>
  `SELECT user_id, event_time_ms // 3600000 AS hour, count(*) AS n, sum(amount_cents) AS total
   FROM ${src} GROUP BY user_id, hour`;

// Dedup formulations. Each keeps exactly one row per txn_id, the one with the
// lowest (partition, offset), and only then drops cancelled ones, as kappa's
// operator chain (dedup, then filter) does; none assumes that duplicates are
// identical. (partition, offset) is packed into one BIGINT k (offset < 2^40,
// partition < 2^23). "dupjoin" was the fastest on 20 M rows here: one
// GROUP BY txn_id finds the few txn_ids sent more than once with their lowest
// k, and a hash join against that small set drops the later copies. The others
// stay for comparison (--dedup-form); README.md has the numbers.
const PACKED_KEY = `partition::BIGINT * 1099511627776 + "offset"`;
const DEDUP_FORMS = {
  dupjoin: aggregate(`(
    SELECT e.* FROM (SELECT *, ${PACKED_KEY} AS k FROM events) e
    LEFT JOIN (SELECT txn_id, min(${PACKED_KEY}) AS k FROM events GROUP BY txn_id HAVING count(*) > 1) d
      ON e.txn_id = d.txn_id
    WHERE (d.txn_id IS NULL OR e.k = d.k) AND e.status <> 'cancelled')`),
  qualify: aggregate(`(
    SELECT * FROM (
      SELECT * FROM events
      QUALIFY row_number() OVER (PARTITION BY txn_id ORDER BY partition, "offset") = 1)
    WHERE status <> 'cancelled')`),
  argmin: aggregate(`(
    SELECT * FROM (
      SELECT arg_min(user_id, k) AS user_id, arg_min(status, k) AS status,
             arg_min(amount_cents, k) AS amount_cents, arg_min(event_time_ms, k) AS event_time_ms
      FROM (SELECT txn_id, user_id, status, amount_cents, event_time_ms, ${PACKED_KEY} AS k FROM events)
      GROUP BY txn_id)
    WHERE status <> 'cancelled')`),
};
const NODEDUP = aggregate(`(SELECT * FROM events WHERE status <> 'cancelled')`);

function die(msg, code = 1) {
  process.stderr.write(`query.mjs: ${msg}\n`);
  process.exit(code);
}

function usage(code) {
  (code ? process.stderr : process.stdout).write(
    'usage: node query.mjs --csv FILE [--threads 1,2] [--json OUT] [--runs 3] [--warmup 1]\n' +
    `                      [--dedup-form ${Object.keys(DEDUP_FORMS).join('|')}]\n` +
    `FILE has the header ${HEADER}\n`);
  process.exit(code);
}

let opts;
try {
  opts = parseArgs({
    options: {
      csv: { type: 'string' },
      threads: { type: 'string', default: '1,2' },
      json: { type: 'string' },
      runs: { type: 'string', default: '3' },
      warmup: { type: 'string', default: '1' },
      'dedup-form': { type: 'string', default: 'dupjoin' },
      help: { type: 'boolean', short: 'h' },
    },
  }).values;
} catch (e) {
  process.stderr.write(`query.mjs: ${e.message}\n`);
  usage(2);
}
if (opts.help) usage(0);
if (!opts.csv) { process.stderr.write('query.mjs: --csv FILE is required\n'); usage(2); }

const threadCounts = opts.threads.split(',').map((s) => s.trim());
if (threadCounts.length === 0 || threadCounts.some((s) => !/^[1-9][0-9]*$/.test(s))) {
  die(`bad --threads ${JSON.stringify(opts.threads)}: want positive integers separated by commas, e.g. 1,2`, 2);
}
const runs = Number(opts.runs), warmup = Number(opts.warmup);
if (!Number.isInteger(runs) || runs < 1) die(`bad --runs ${JSON.stringify(opts.runs)}: want an integer >= 1`, 2);
if (!Number.isInteger(warmup) || warmup < 0) die(`bad --warmup ${JSON.stringify(opts.warmup)}: want an integer >= 0`, 2);
const dedupForm = opts['dedup-form'];
if (!(dedupForm in DEDUP_FORMS)) die(`bad --dedup-form ${dedupForm}: one of ${Object.keys(DEDUP_FORMS).join(', ')}`, 2);

// The input: an existing regular file whose first line is the header.
const csvPath = path.resolve(opts.csv);
let st;
try { st = fs.statSync(csvPath); } catch (e) {
  die(e.code === 'ENOENT' ? `CSV file not found: ${opts.csv}` : `cannot stat ${opts.csv}: ${e.message}`);
}
if (!st.isFile()) die(`not a regular file: ${opts.csv}`);
{
  let fd;
  try { fd = fs.openSync(csvPath, 'r'); } catch (e) { die(`cannot open ${opts.csv}: ${e.message}`); }
  const buf = Buffer.alloc(4096);
  const n = fs.readSync(fd, buf, 0, buf.length, 0);
  fs.closeSync(fd);
  let first = buf.subarray(0, n).toString('utf8').split('\n')[0].replace(/\r$/, '').replace(/^\uFEFF/, '');
  if (first !== HEADER) {
    die(`bad header in ${opts.csv}:\n  expected: ${HEADER}\n  found:    ${n === 0 ? '(empty file)' : first.slice(0, 200)}`);
  }
}

let duckdb;
try {
  duckdb = await import('@duckdb/node-api');
} catch (e) {
  if (e.code === 'ERR_MODULE_NOT_FOUND' || /Cannot find (module|package)/.test(e.message)) {
    die(`DuckDB (@duckdb/node-api) is not installed: run npm ci in bench/duckdb (or use bench/duckdb/run.sh)`);
  }
  die(`loading @duckdb/node-api failed: ${e.message}\n(try: rm -rf bench/duckdb/node_modules && npm ci in bench/duckdb)`);
}

const sqlString = (s) => `'${s.replace(/'/g, "''")}'`;
const instance = await duckdb.DuckDBInstance.create(':memory:');
const con = await instance.connect();
const scalar = async (sql) => (await con.runAndReadAll(sql)).getRows()[0][0];
const duckdbVersion = String(await scalar('SELECT version()'));
const loadThreads = Number(await scalar(`SELECT current_setting('threads')`));
// Row order of the table and of results means nothing here (dedup orders by
// (partition, offset) explicitly), so let DuckDB load and build in parallel
// without keeping it: this halves the load time.
await con.run('SET preserve_insertion_order = false');

// Load once.
const columnsSql = '{' + Object.entries(COLUMNS).map(([k, v]) => `${sqlString(k)}: ${sqlString(v)}`).join(', ') + '}';
let t0 = performance.now();
try {
  await con.run(
    `CREATE TABLE events AS SELECT * FROM read_csv(${sqlString(csvPath)},
       header = true, auto_detect = false, delim = ',', quote = '"', columns = ${columnsSql})`);
} catch (e) {
  die(`loading ${opts.csv} into DuckDB failed: ${e.message}`);
}
const loadSeconds = (performance.now() - t0) / 1000;
const rows = Number(await scalar('SELECT count(*) FROM events'));
if (rows === 0) die(`${opts.csv} has a header but no rows`);
// The dedup forms pack (partition, offset) into one BIGINT.
if (!(await scalar(`SELECT min(partition) >= 0 AND max(partition) < 8388608 AND
                           min("offset") >= 0 AND max("offset") < 1099511627776 FROM events`))) {
  die(`${opts.csv}: partitions must be in [0, 2^23) and offsets in [0, 2^40)`);
}
const distinctTxns = Number(await scalar('SELECT count(DISTINCT txn_id) FROM events'));
const cancelledRows = Number(await scalar(`SELECT count(*) FROM events WHERE status = 'cancelled'`));

// A shared machine makes wall-clock numbers noisy: record how busy it was.
const cpus = os.availableParallelism ? os.availableParallelism() : os.cpus().length;
const loadBefore = os.loadavg()[0];
const fmt = (x, d) => x.toFixed(d);
const print = (s = '') => process.stdout.write(s + '\n');
print(`DuckDB ${duckdbVersion} (@duckdb/node-api), in-memory table from ${opts.csv}`);
print(`rows ${rows} (distinct txn_id ${distinctTxns}, cancelled ${cancelledRows}); ` +
      `load ${fmt(loadSeconds, 2)} s on ${loadThreads} threads (not counted below)`);
const timing = `${warmup} warm-up round${warmup === 1 ? '' : 's'} + best of ${runs} timed rounds, ` +
  'each round running every (threads, query) once';
print(`timing: ${timing}; rows/s = input rows / best query seconds (wall clock); ` +
      `cpu s = process CPU time of that run; dedup form: ${dedupForm}`);
print();
const cols = ['query', 'threads', 'best s', 'median s', 'cpu s', 'M rows/s', 'groups', 'total_count', 'total_sum'];
const widths = [8, 7, 8, 8, 8, 8, 9, 11, 15];
const row = (cells) => cells.map((c, i) => String(c)[i < 1 ? 'padEnd' : 'padStart'](widths[i])).join('  ');
print(row(cols));

const queries = [['dedup', DEDUP_FORMS[dedupForm]], ['nodedup', NODEDUP]];
const cases = [];
for (const threads of threadCounts.map(Number)) {
  for (const [name, sql] of queries) cases.push({ threads, name, sql, seconds: [], cpuSeconds: [], check: null });
}
// Rounds: each round runs every (threads, query) case once, so a burst of
// load from other processes hits all cases alike instead of one of them.
// The first `warmup` rounds are not timed.
const rounds = warmup + runs;
for (let round = 0; round < rounds; round++) {
  process.stderr.write(`query.mjs: ${round < warmup ? 'warm-up' : 'timed'} round ${round + 1}/${rounds}\n`);
  for (const cs of cases) {
    await con.run(`SET threads = ${cs.threads}`);
    await con.run('DROP TABLE IF EXISTS r');
    const cpu = process.cpuUsage();
    const t = performance.now();
    await con.run(`CREATE TEMP TABLE r AS ${cs.sql}`);
    const s = (performance.now() - t) / 1000;
    const c = process.cpuUsage(cpu);
    if (round >= warmup) { cs.seconds.push(s); cs.cpuSeconds.push((c.user + c.system) / 1e6); }
    const [g, n, sum] = (await con.runAndReadAll('SELECT count(*), sum(n), sum(total) FROM r')).getRows()[0];
    const check = { groups: BigInt(g), total_count: BigInt(n ?? 0), total_sum: BigInt(sum ?? 0) };
    if (cs.check && (cs.check.groups !== check.groups || cs.check.total_count !== check.total_count ||
                     cs.check.total_sum !== check.total_sum)) {
      die(`${cs.name} on ${cs.threads} threads gave different results in two runs`);
    }
    cs.check = check;
    await con.run('DROP TABLE r');
  }
}
await con.run(`SET threads = ${loadThreads}`);

const results = [];
const checks = {};
for (const cs of cases) {
  const { threads, name, seconds, cpuSeconds, check } = cs;
  const bestIndex = seconds.indexOf(Math.min(...seconds));
  const best = seconds[bestIndex];
  const median = [...seconds].sort((a, b) => a - b)[Math.floor(seconds.length / 2)];
  const prev = checks[name];
  if (prev && (prev.groups !== check.groups || prev.total_count !== check.total_count || prev.total_sum !== check.total_sum)) {
    process.stderr.write(`query.mjs: WARNING: ${name} gave different results on ${threads} threads\n`);
  }
  checks[name] = check;
  results.push({
    query: name, threads, seconds: best, median_seconds: median, all_seconds: seconds,
    cpu_seconds: cpuSeconds[bestIndex], all_cpu_seconds: cpuSeconds,
    rows_per_second: rows / best, ...check,
  });
  print(row([name, threads, fmt(best, 3), fmt(median, 3), fmt(cpuSeconds[bestIndex], 3), fmt(rows / best / 1e6, 2),
             check.groups, check.total_count, check.total_sum]));
}

const loadAfter = os.loadavg()[0];
print(`\nmachine: ${cpus} CPUs, 1-minute load average ${fmt(loadBefore, 2)} before the queries, ${fmt(loadAfter, 2)} after`);
if (Math.max(loadBefore, loadAfter) > cpus) {
  print('note: the machine was busier than it has CPUs: other processes took CPU time, so wall-clock ' +
        'numbers are pessimistic; compare cpu s, or run again on a quiet machine');
}

if (opts.json) {
  const out = {
    duckdb_version: duckdbVersion,
    csv: csvPath,
    rows,
    distinct_txn_ids: distinctTxns,
    cancelled_rows: cancelledRows,
    load_seconds: loadSeconds,
    load_threads: loadThreads,
    cpus,
    load_average_1m: { before: loadBefore, after: loadAfter },
    timing,
    dedup_form: dedupForm,
    runs: results,
  };
  // Counts and sums are exact integers (BigInt): written as bare JSON numbers.
  const text = JSON.stringify(out, (k, v) => (typeof v === 'bigint' ? `__bigint__${v}` : v), 2)
    .replace(/"__bigint__(-?\d+)"/g, '$1');
  try { fs.writeFileSync(opts.json, text + '\n'); } catch (e) { die(`cannot write ${opts.json}: ${e.message}`); }
  print(`wrote ${opts.json}`);
}
