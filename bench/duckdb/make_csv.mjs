#!/usr/bin/env node
// make_csv.mjs: writes a synthetic transaction log as CSV for query.mjs, shaped
// like kappa's own generator (engine/transaction_generator.cc): Zipf-skewed
// users, txn_id "t%011d", user_id "u%07d", 85% approved / 10% cancelled /
// 5% refunded, amount 100 + a^3 * 200000 cents, and duplicate sends that copy a
// recent transaction exactly (same fields, later offset, same partition since
// the partition follows user_id). Deterministic for a given seed. Rows are the
// total including duplicates. Only for testing and benchmarking the baseline;
// kappa's C++ benchmark writes its own CSV with the same header.
//
//   node make_csv.mjs --rows 20000000 --out /tmp/kappa-20m.csv
import fs from 'node:fs';
import { parseArgs } from 'node:util';

const HEADER = 'partition,offset,txn_id,user_id,status,amount_cents,currency,event_time_ms';

function usage(code) {
  (code ? process.stderr : process.stdout).write(
    `usage: node make_csv.mjs [--rows N] [--out FILE|-] [--users N] [--partitions N]\n` +
    `         [--dup-fraction F] [--cancel-fraction F] [--days D] [--zipf S]\n` +
    `         [--out-of-order-fraction F] [--seed N]\n` +
    `defaults: 1000000 rows to stdout, 100000 users, 8 partitions, 2% duplicates,\n` +
    `10% cancelled, event times spread over 3 days, Zipf 1.1, 1% out of order, seed 1\n`);
  process.exit(code);
}

let opts;
try {
  opts = parseArgs({
    options: {
      rows: { type: 'string', default: '1000000' },
      out: { type: 'string', default: '-' },
      users: { type: 'string', default: '100000' },
      partitions: { type: 'string', default: '8' },
      'dup-fraction': { type: 'string', default: '0.02' },
      'cancel-fraction': { type: 'string', default: '0.10' },
      days: { type: 'string', default: '3' },
      zipf: { type: 'string', default: '1.1' },
      'out-of-order-fraction': { type: 'string', default: '0.01' },
      seed: { type: 'string', default: '1' },
      help: { type: 'boolean', short: 'h' },
    },
  }).values;
} catch (e) {
  process.stderr.write(`make_csv.mjs: ${e.message}\n`);
  usage(2);
}
if (opts.help) usage(0);

function num(name, { int = false, min = -Infinity, max = Infinity } = {}) {
  const v = Number(opts[name]);
  if (!Number.isFinite(v) || (int && !Number.isInteger(v)) || v < min || v > max) {
    process.stderr.write(`make_csv.mjs: bad --${name} ${JSON.stringify(opts[name])}\n`);
    process.exit(2);
  }
  return v;
}
const rows = num('rows', { int: true, min: 0 });
const users = num('users', { int: true, min: 1, max: 9999999 });
const partitions = num('partitions', { int: true, min: 1 });
const dupFraction = num('dup-fraction', { min: 0, max: 1 });
const cancelFraction = num('cancel-fraction', { min: 0, max: 1 });
const days = num('days', { min: 0 });
const zipfS = num('zipf', { min: 0 });
const oooFraction = num('out-of-order-fraction', { min: 0, max: 1 });
const seed = num('seed', { int: true, min: 0 });

// sfc32: small, fast, deterministic.
let a = 0x9e3779b9, b = 0x243f6a88, c = 0xb7e15162, d = seed >>> 0;
function rand() {
  a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0;
  const t = (a + b | 0) + d | 0;
  d = d + 1 | 0;
  a = b ^ (b >>> 9);
  b = c + (c << 3) | 0;
  c = (c << 21) | (c >>> 11);
  c = c + t | 0;
  return (t >>> 0) / 4294967296;
}
for (let i = 0; i < 20; i++) rand();

// Zipf over ranks 0..users-1 by inverse CDF.
const cdf = new Float64Array(users);
{
  let acc = 0;
  for (let r = 0; r < users; r++) { acc += 1 / Math.pow(r + 1, zipfS); cdf[r] = acc; }
  for (let r = 0; r < users; r++) cdf[r] /= acc;
}
function zipf() {
  const u = rand();
  let lo = 0, hi = users - 1;
  while (lo < hi) { const mid = (lo + hi) >>> 1; if (cdf[mid] < u) lo = mid + 1; else hi = mid; }
  return lo;
}

// Precomputed user ids and partitions (FNV-1a of the user id, as a keyed
// producer would place them: one user's records, and so its duplicates, stay
// in one partition).
const userIds = new Array(users);
const userPartition = new Int32Array(users);
for (let r = 0; r < users; r++) {
  const id = 'u' + String(r).padStart(7, '0');
  userIds[r] = id;
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) { h ^= id.charCodeAt(i); h = Math.imul(h, 0x01000193); }
  userPartition[r] = (h >>> 0) % partitions;
}

const CURRENCIES = ['USD', 'EUR', 'GBP', 'JPY'];
const START_MS = 1767225600000; // 2026-01-01T00:00:00Z
const stepMs = rows > 0 ? (days * 86400000) / rows : 0;
const MAX_DELAY_MS = 60000;
const RECENT = 256;
const approvedCut = (1 - cancelFraction) * 0.85 / 0.90; // keeps the 85:5 approved:refunded ratio
const cancelCut = approvedCut + cancelFraction;

const nextOffset = new Float64Array(partitions);
// Ring of recent valid records (the "tail" of each line after partition,offset).
const recentTail = new Array(RECENT);
const recentPart = new Int32Array(RECENT);
let recentCount = 0, recentNext = 0;
let nextTxn = 0;
const stats = { rows: 0, duplicates: 0, cancelled: 0, outOfOrder: 0 };

const fd = opts.out === '-' ? 1 : fs.openSync(opts.out, 'w');
function write(s) {
  const buf = Buffer.from(s, 'latin1');
  let off = 0;
  while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off);
}
write(HEADER + '\n');

const CHUNK = 65536;
let lines = [];
for (let i = 0; i < rows; i++) {
  let part, tail;
  if (recentCount > 0 && rand() < dupFraction) {
    const k = Math.floor(rand() * recentCount);
    part = recentPart[k];
    tail = recentTail[k];
    stats.duplicates++;
  } else {
    const u = zipf();
    part = userPartition[u];
    const txn = 't' + String(nextTxn++).padStart(11, '0');
    const s = rand();
    let status;
    if (s < approvedCut) status = 'approved';
    else if (s < cancelCut) { status = 'cancelled'; stats.cancelled++; }
    else status = 'refunded';
    const x = rand();
    const amount = 100 + Math.floor(x * x * x * 200000);
    const currency = CURRENCIES[Math.floor(rand() * 4)];
    let t = START_MS + Math.floor(i * stepMs);
    if (oooFraction > 0 && rand() < oooFraction) {
      t -= 1 + Math.floor(rand() * MAX_DELAY_MS);
      stats.outOfOrder++;
    }
    tail = `${txn},${userIds[u]},${status},${amount},${currency},${t}`;
    recentTail[recentNext] = tail;
    recentPart[recentNext] = part;
    recentNext = (recentNext + 1) % RECENT;
    if (recentCount < RECENT) recentCount++;
  }
  lines.push(`${part},${nextOffset[part]++},${tail}`);
  if (lines.length === CHUNK) { lines.push(''); write(lines.join('\n')); lines = []; }
}
if (lines.length) { lines.push(''); write(lines.join('\n')); }
stats.rows = rows;
if (fd !== 1) fs.closeSync(fd);
process.stderr.write(
  `make_csv.mjs: ${rows} rows (${stats.duplicates} duplicates, ${stats.cancelled} cancelled originals, ` +
  `${stats.outOfOrder} out of order), ${users} users, ${partitions} partitions, ` +
  `${days} days of event time${fd !== 1 ? ` -> ${opts.out}` : ''}\n`);
