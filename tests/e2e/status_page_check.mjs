// The status page in a real browser (issue 15): Debian's chromium, headless,
// driven by playwright-core (installed by tests/e2e/status_page_browser.sh
// into a cache directory; no browser download). Loads the page of a running
// job, waits until it shows numbers while the job still has lag, then reads
// the numbers it displays and fetches /metrics in the same moment and checks
// they agree: records in and lag within one sample (two seconds' worth) of records
// (--max-rate) every time, and exactly (with the DLQ count) when both show
// the same sample; and the DLQ by error type adding up.
// Saves a screenshot; with --promote, waits for this version to be shown
// caught up, runs the promote command, waits for the page to show the
// promotion and the version serving, and saves a second screenshot.
//   node status_page_check.mjs --url http://127.0.0.1:P/ --out DIR --max-rate R
//        [--promote "kappa promote ..."] [--copy PATH]
// Exit 0 when every check passed; each check prints one line.
import { execSync } from "node:child_process";
import { copyFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { join } from "node:path";

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
const url = args.url, out = args.out, maxRate = Number(args["max-rate"]);
if (!url || !out || !(maxRate > 0)) {
  console.error("usage: status_page_check.mjs --url URL --out DIR --max-rate R [--promote CMD] [--copy PATH]");
  process.exit(2);
}
const pwDir = process.env.KAPPA_PLAYWRIGHT_DIR || join(homedir(), ".cache/kappa/playwright");
const { chromium } = createRequire(join(pwDir, "node_modules", "x.js"))("playwright-core");
mkdirSync(out, { recursive: true });

let failures = 0;
function check(ok, what) {
  console.log(`${ok ? "OK" : "FAIL"} ${what}`);
  if (!ok) failures++;
}
function metric(text, name) {
  const m = text.match(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, "m"));
  return m ? Number(m[1]) : NaN;
}
const num = t => Number(String(t).replace(/[^0-9.\-]/g, ""));

const browser = await chromium.launch({
  executablePath: process.env.KAPPA_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on("pageerror", e => check(false, `no script error on the page: ${e}`));
  await page.goto(url);
  // Rendered numbers, while there is lag to show.
  await page.waitForFunction(() => document.body.dataset.rendered && document.getElementById("records-in").textContent !== "-" &&
    Number(document.getElementById("lag").textContent.replace(/,/g, "")) > 0, null, { timeout: 20000 });
  // The page's numbers and /metrics in the same moment: right after the page
  // renders a new sample. A sample published in between moves them by at
  // most one second's worth of records (every attempt); one attempt of six
  // must see the very same sample: records in, lag and DLQ exactly equal.
  let matched = null, last = null, close = true;
  for (let attempt = 0; attempt < 6 && !matched; attempt++) {
    const before = await page.evaluate(() => document.body.dataset.rendered);
    await page.waitForFunction(b => document.body.dataset.rendered !== b, before, { timeout: 5000, polling: 10 });
    last = await page.evaluate(async () => {
      const t = id => document.getElementById(id).textContent;
      const shown = { in: t("records-in"), lag: t("lag"), dlq: t("dlq"), rate: t("rate"), percent: t("percent"),
        byType: [...document.querySelectorAll("#dlq-types td[id^=dlq-]")].map(e => [e.id.slice(4), e.textContent]) };
      const metrics = await (await fetch("/metrics", { cache: "no-store" })).text();
      return { shown, metrics };
    });
    const s = last.shown, m = last.metrics;
    const mIn = metric(m, "kappa_records_in_total"), mLag = metric(m, "kappa_lag_records"), mDlq = metric(m, "kappa_records_dlq_total");
    const row = { attempt, page_in: num(s.in), metrics_in: mIn, page_lag: num(s.lag), metrics_lag: mLag, page_dlq: num(s.dlq), metrics_dlq: mDlq };
    console.log("compare " + JSON.stringify(row));
    // A sample is published a second or a little more after the previous one
    // (more on a loaded machine, and the rate cap allows a burst): two
    // seconds' worth bounds one sample's move.
    if (!(Math.abs(row.page_in - mIn) <= 2 * maxRate && Math.abs(row.page_lag - mLag) <= 2 * maxRate)) close = false;
    if (row.page_in === mIn && row.page_lag === mLag && row.page_dlq === mDlq && mLag > 0) matched = row;
  }
  check(close, "page numbers within one sample (two seconds' worth) of /metrics in every attempt (records in, lag)");
  check(matched !== null, "page numbers match /metrics during the run (records in, lag and DLQ of the same sample)");
  if (last) {
    const byType = last.shown.byType.reduce((a, [, n]) => a + num(n), 0);
    check(byType === num(last.shown.dlq) && byType > 0, `DLQ by error type adds up to the DLQ count (${JSON.stringify(last.shown.byType)} = ${last.shown.dlq})`);
  }
  const versions = await page.evaluate(() => [...document.querySelectorAll("#versions tr")].map(r => r.textContent.replace(/\s+/g, " ").trim()));
  console.log("versions " + JSON.stringify(versions));
  const points = await page.evaluate(() => document.querySelectorAll("#chart-rate polyline, #chart-lag polyline").length);
  check(points >= 2, `throughput and lag charts drawn (${points} lines)`);
  await page.screenshot({ path: join(out, "status_page_running.png"), fullPage: true });
  console.log("screenshot " + join(out, "status_page_running.png"));
  let final = "status_page_running.png";
  if (args.promote) {
    const version = await page.evaluate(() => document.getElementById("title").textContent.replace(/.* v/, ""));
    await page.waitForFunction(v => (document.getElementById("version-" + v)?.textContent || "").includes("caught-up"), version,
      { timeout: 40000 });
    check(true, `v${version} shown caught up`);
    console.log("promote: " + execSync(args.promote, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim().split("\n")[0]);
    await page.waitForFunction(v => document.getElementById("promotion").textContent.startsWith("v" + v + " at") &&
      (document.getElementById("version-" + v)?.textContent || "").includes("serving"), version, { timeout: 15000 });
    const promo = await page.evaluate(() => document.getElementById("promotion").textContent);
    check(true, `the page shows the promotion: ${promo.split("\n")[0]}`);
    await page.waitForTimeout(1200);  // one more render, so the charts include the last samples
    await page.screenshot({ path: join(out, "status_page.png"), fullPage: true });
    console.log("screenshot " + join(out, "status_page.png"));
    final = "status_page.png";
  }
  if (args.copy && failures === 0) copyFileSync(join(out, final), args.copy);
} catch (e) {
  check(false, String(e && e.stack || e));
} finally {
  await browser.close();
}
console.log(failures === 0 ? "PASS" : `FAILED ${failures}`);
process.exit(failures === 0 ? 0 : 1);
