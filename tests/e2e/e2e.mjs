// rankfit browser tests: sign in, upload a dataset (progress bar + validation report),
// launch runs and follow one to a terminal state on the run page, leaderboard,
// comparison, adapter download, sign out. Screenshots of every page go to SCREENSHOT_DIR.
// Run through tests/e2e/run.sh, which starts the server and a worker.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const BASE = process.env.BASE_URL;
const TOKEN = process.env.RANKFIT_TOKEN;
const RIVAL_TOKEN = process.env.RIVAL_TOKEN;
const SHOTS = process.env.SCREENSHOT_DIR || "target/e2e-screenshots";
const PROFILE = process.env.PROFILE_DIR || "target/e2e-chromium-profile";
const RUN_TIMEOUT_MS = Number(process.env.E2E_RUN_TIMEOUT_S || 900) * 1000;
if (!BASE || !TOKEN) { console.error("BASE_URL and RANKFIT_TOKEN are required (use tests/e2e/run.sh)"); process.exit(2); }

let passed = 0, failed = 0, skipped = 0;
const state = {};
fs.mkdirSync(SHOTS, { recursive: true });
fs.rmSync(PROFILE, { recursive: true, force: true });

const context = await chromium.launchPersistentContext(PROFILE, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"], // the fresh --user-data-dir is PROFILE (added by Playwright)
  viewport: { width: 1280, height: 900 },
  acceptDownloads: true,
});
const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(30_000);
const pageErrors = [];
page.on("pageerror", (e) => pageErrors.push(String(e)));
page.on("console", (m) => { if (m.type() === "error") pageErrors.push("console: " + m.text()); });

function check(cond, message) { if (!cond) throw new Error(message); }
async function shot(name) { await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true }); }
/** Navigates and checks the HTML document is under 100 KB. */
async function visit(url) {
  const resp = await page.goto(BASE + url, { waitUntil: "domcontentloaded" });
  check(resp, `no response for ${url}`);
  const body = await resp.body().catch(() => Buffer.alloc(0));
  check(body.length < 100 * 1024, `${url} is ${body.length} bytes (over 100 KB)`);
  return resp;
}
/** Runs one test; `expectStatuses` lists HTTP error statuses the test provokes on purpose
 *  (the browser logs those as console errors; any other console error fails the test). */
async function test(name, fn, expectStatuses = []) {
  const t0 = Date.now();
  pageErrors.length = 0;
  try {
    const r = await fn();
    if (r === "skip") { skipped++; console.log(`SKIP ${name}`); return; }
    const expected = (e) => expectStatuses.some((s) => e.includes(`Failed to load resource: the server responded with a status of ${s} `));
    const unexpected = pageErrors.filter((e) => !expected(e));
    check(unexpected.length === 0, "errors in the page: " + unexpected.join("; "));
    passed++;
    console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e.message}`);
    await shot(`FAILED-${name.replace(/[^a-z0-9]+/gi, "-")}`).catch(() => {});
  }
}

const jsonl = (n) => Array.from({ length: n }, (_, i) => JSON.stringify(i % 2 === 0
  ? { text: `a truly wonderful and moving film, number ${i}`, label: "positive" }
  : { text: `a dull, tiresome and far too long film, number ${i}`, label: "negative" })).join("\n") + "\n";

await test("signed-out visitors are sent to sign-in; a bad token shows an error", async () => {
  await visit("/runs");
  check(new URL(page.url()).pathname === "/sign-in", `expected /sign-in, got ${page.url()}`);
  await shot("01-sign-in");
  await page.getByLabel("Team token").fill("rf_this_is_not_a_token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#sign-in-error").waitFor();
  check((await page.locator("#sign-in-error").textContent()).includes("unknown"), "error text");
  await shot("02-sign-in-error");
}, [401]);

await test("sign in with the team token", async () => {
  await page.getByLabel("Team token").fill(TOKEN);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL((u) => u.pathname === "/runs");
  const cookies = await context.cookies(BASE);
  const c = cookies.find((c) => c.name === "rankfit_session");
  check(c && c.httpOnly && c.sameSite === "Strict", "HttpOnly SameSite=Strict session cookie");
  check(!(await page.evaluate(() => document.cookie)).includes("rankfit_session"), "cookie not visible to scripts");
  await visit("/");
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
  await shot("03-dashboard-empty");
});

await test("upload a JSONL dataset with a progress bar and see the validation report", async () => {
  await visit("/datasets");
  await page.getByLabel("File").setInputFiles({ name: "sentiment.jsonl", mimeType: "application/x-ndjson", buffer: Buffer.from(jsonl(60)) });
  await page.getByLabel("Name", { exact: true }).fill("e2e-sentiment");
  await page.getByRole("button", { name: "Upload and validate" }).click();
  await page.locator("#upload-report").waitFor();
  check(await page.locator("#upload-progress").isVisible(), "progress bar shown");
  check(Number(await page.locator("#upload-bar").getAttribute("value")) === 100, "progress reached 100%");
  const text = await page.locator("#upload-report").textContent();
  check(text.includes("Validation report") && text.includes("60") && text.includes("positive") && text.includes("negative"), "report content: " + text.slice(0, 300));
  check(text.includes("wonderful"), "preview rows");
  state.datasetId = (await page.locator("#upload-report a[href^='/datasets/']").first().getAttribute("href")).split("/").pop();
  await shot("04-datasets-upload-report");
});

await test("a broken file is rejected with line-numbered errors", async () => {
  const bad = jsonl(4) + "{not json\n" + JSON.stringify({ text: "no label here" }) + "\n";
  await page.getByLabel("File").setInputFiles({ name: "broken.jsonl", mimeType: "application/x-ndjson", buffer: Buffer.from(bad) });
  await page.getByLabel("Name", { exact: true }).fill("e2e-broken");
  await page.getByRole("button", { name: "Upload and validate" }).click();
  await page.locator("#upload-errors").waitFor();
  const text = await page.locator("#upload-errors").textContent();
  check(/line 5/.test(text), "line 5 is named: " + text.slice(0, 300));
  await shot("05-datasets-upload-errors");
}, [422]);

await test("dataset detail shows the stored report", async () => {
  check(state.datasetId, "needs the uploaded dataset");
  await visit(`/datasets/${state.datasetId}`);
  await page.getByRole("heading", { name: "Validation report" }).waitFor();
  check((await page.locator("#report-rows").textContent()).trim() === "60", "row count");
  await shot("06-dataset-detail");
});

await test("launch a run from the form", async () => {
  check(state.datasetId, "needs the uploaded dataset");
  await visit(`/runs/new?dataset_id=${state.datasetId}`);
  await page.getByLabel("Method").selectOption("adalora");
  await page.getByLabel("Budget (average rank per module)").fill("2");
  await page.getByLabel("Run name (optional)").fill("e2e-adalora");
  await page.getByLabel("Max steps (overrides epochs)").fill("6");
  await page.getByLabel("Batch size").fill("8");
  await page.getByLabel("Max sequence length").fill("32");
  await page.getByLabel("Checkpoint every N steps (0: never)").fill("0");
  // The live estimate follows the fields (a dry run: nothing is created).
  await page.waitForFunction(() => /^About .* 6 steps over/.test(document.querySelector("#estimate-text")?.textContent || ""), null, { timeout: 15_000 });
  await page.getByLabel("Max steps (overrides epochs)").fill("9");
  await page.waitForFunction(() => /^About .* 9 steps over/.test(document.querySelector("#estimate-text")?.textContent || ""), null, { timeout: 15_000 });
  await page.getByLabel("Max steps (overrides epochs)").fill("6");
  await page.waitForFunction(() => / 6 steps over/.test(document.querySelector("#estimate-text")?.textContent || ""), null, { timeout: 15_000 });
  check((await page.locator("#estimate-text").textContent()).includes("peak memory"), "the estimate names peak memory");
  await shot("07-launch-form");
  await page.getByRole("button", { name: "Launch run" }).click();
  await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/);
  state.runId = page.url().split("/").pop();
  // A second run (plain LoRA, same budget) for the comparison page, through the API with the session + CSRF header.
  state.runId2 = await page.evaluate(async (ds) => {
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    const r = await fetch("/api/v1/runs", { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ dataset_id: ds, method: "lora", budget: 2, name: "e2e-lora", training: { max_steps: 6, batch_size: 8, max_seq_len: 32, checkpoint_every: 0 } }) });
    if (!r.ok) throw new Error("second run: HTTP " + r.status);
    return (await r.json()).run.id;
  }, state.datasetId);
  await shot("08-run-live");
});

await test("the run page follows the run to a terminal state", async () => {
  check(state.runId, "needs the launched run");
  await visit(`/runs/${state.runId}`);
  const badge = page.locator("#run-status");
  await page.waitForFunction(() => ["succeeded", "failed", "cancelled"].includes(document.querySelector("#run-status")?.textContent.trim()),
    null, { timeout: RUN_TIMEOUT_MS, polling: 500 });
  await page.waitForLoadState("domcontentloaded");
  await page.waitForTimeout(1500); // the page reloads itself once to render results
  state.outcome = (await badge.textContent()).trim();
  console.log(`     run ${state.runId} ended: ${state.outcome}`);
  if (state.outcome === "failed") {
    const err = (await page.locator("#run-error").textContent()).trim();
    check(await page.locator("#run-error").isVisible() && err.length > 0, "a failed run shows its error message");
    check(false, `the run failed: ${err.slice(0, 300)}`);
  } else {
    check(state.outcome === "succeeded", `unexpected terminal state ${state.outcome}`);
    await page.locator("#curves svg").first().waitFor({ timeout: 15_000 });
    await page.locator("#heatmap svg").waitFor({ timeout: 15_000 });
  }
  check((await page.locator("#log li").count()) > 0, "the event log shows events");
  await shot("09-run-terminal");
});

await test("operators see the worker alive with its finished run on the Workers page", async () => {
  await visit("/workers");
  check(await page.locator('nav a[href="/workers"]').count() === 1, "admin teams get the Workers link");
  const row = page.locator("#workers tbody tr").first();
  await row.waitFor({ timeout: 15_000 });
  const text = await row.textContent();
  check(/alive/.test(text), "the worker is alive: " + text);
  check(/cpu/.test(text), "its device is shown: " + text);
  await shot("09b-workers");
});

await test("a long run shows live progress with an ETA on its page and in the runs list, and can be cancelled", async () => {
  check(state.datasetId, "needs the dataset");
  const id = await page.evaluate(async (ds) => {
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    const r = await fetch("/api/v1/runs", { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ dataset_id: ds, method: "lora", budget: 2, name: "e2e-long", training: { max_steps: 5000, batch_size: 8, max_seq_len: 32, checkpoint_every: 0 } }) });
    if (!r.ok) throw new Error("long run: HTTP " + r.status);
    return (await r.json()).run.id;
  }, state.datasetId);
  await visit(`/runs/${id}`);
  // Live from the event stream: "training step n/5000 (p%) · loss … · ETA …".
  await page.waitForFunction(() => /^training step [1-9]\d*\/5000 .*ETA/.test(document.querySelector("#progress-line")?.textContent || ""),
    null, { timeout: RUN_TIMEOUT_MS, polling: 250 });
  check(Number(await page.locator("#run-progress").getAttribute("max")) === 5000, "the bar counts the run's steps");
  await page.waitForFunction(() => Number(document.querySelector("#run-progress").value) > 0, null, { timeout: 10_000 });
  await shot("09b-run-progress");
  await visit("/runs");
  const row = page.locator("#runs-table tr", { has: page.locator(`a[href="/runs/${id}"]`) });
  check((await row.locator("progress.mini").count()) === 1, "the runs list shows the running run's progress");
  check(/training step \d+\/5000/.test(await row.locator(".progress-text").textContent()), "with its step count");
  check((await row.textContent()).includes("est. ~"), "and its estimate");
  await shot("09c-runs-progress");
  await visit(`/runs/${id}`);
  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: "Cancel run" }).click();
  await page.waitForFunction(() => document.querySelector("#run-status")?.textContent.trim() === "cancelled", null, { timeout: 60_000, polling: 500 });
});

await test("runs list filters by status", async () => {
  check(state.outcome, "needs a finished run");
  await visit(`/runs?status=${state.outcome}`);
  await page.locator(`a[href="/runs/${state.runId}"]`).first().waitFor();
  await shot("10-runs-filtered");
  await visit("/runs?status=queued");
  check((await page.locator(`a[href="/runs/${state.runId}"]`).count()) === 0, "filter excludes the finished run");
});

await test("leaderboard for the dataset", async () => {
  check(state.datasetId, "needs the dataset");
  // Let the second run finish too so the board and comparison have two entries.
  await page.waitForFunction(async (id) => {
    const r = await fetch(`/api/v1/runs/${id}`); const d = await r.json();
    return ["succeeded", "failed", "cancelled"].includes(d.run.status);
  }, state.runId2, { timeout: RUN_TIMEOUT_MS, polling: 1000 });
  await visit(`/leaderboard?dataset_id=${state.datasetId}&budget=2`);
  await page.getByRole("heading", { name: "Leaderboard" }).waitFor();
  if (state.outcome === "succeeded") {
    const rows = page.locator("#cells-table tbody tr");
    check((await rows.count()) >= 1, "a succeeded run is on the board");
    await page.locator("#cells-table th button", { hasText: "Method" }).click();
    check((await page.locator("#cells-table th[aria-sort]").textContent()).includes("Method"), "sortable columns");
  } else {
    await page.locator("#no-entries").waitFor();
  }
  await shot("11-leaderboard");
  await visit(`/leaderboard?dataset_id=${state.datasetId}&method=lora`);
  await shot("12-leaderboard-filtered");
});

await test("launch a study from the page, watch its grid fill, read the table and plots", async () => {
  check(state.datasetId, "needs the dataset");
  await visit("/studies");
  await page.getByLabel("Study name").fill("e2e-study");
  await page.getByLabel("Datasets (select several)").selectOption([state.datasetId]);
  await page.getByLabel("Methods").selectOption(["lora", "adalora"]);
  await page.getByLabel("Budgets (average rank per module)").selectOption(["2"]);
  await page.getByLabel("Seeds per cell").fill("2");
  await page.getByLabel("Max steps (optional, overrides epochs)").fill("4");
  check((await page.locator("#s-size").textContent()).includes("4 runs"), "the form says how many runs it queues");
  await page.waitForFunction(() => /^4 runs will be queued: about .* one after another on one worker, peak memory/.test(document.querySelector("#s-size")?.textContent || ""),
    null, { timeout: 15_000 });
  await shot("13-study-form");
  await page.getByRole("button", { name: "Launch study" }).click();
  await page.waitForURL(/\/studies\/[0-9a-f-]{36}$/);
  state.studyId = page.url().split("/").pop();
  check((await page.locator("#study-grid tbody tr").count()) === 2, "one grid row per method");
  await shot("14-study-queued");
  // The grid fills in from the SSE stream; the page reloads itself once every run is done.
  await page.waitForFunction(() => /^4\/4 /.test(document.querySelector("#study-count")?.textContent || ""), null, { timeout: RUN_TIMEOUT_MS, polling: 500 });
  await page.locator("#paper-table").waitFor({ timeout: 30_000 });
  check((await page.locator("#study-grid a.badge.succeeded").count()) === 4, "every run of the grid succeeded");
  check((await page.locator("#paper-table tbody tr").count()) === 2, "the paper table has a row per method");
  check((await page.locator("#paper-table").textContent()).includes("±"), "cells carry their spread");
  check((await page.locator(".charts svg").count()) >= 3, "score-vs-budget and Pareto plots");
  check((await page.locator("#cells-table").textContent()).includes("paired by seed"), "differences against LoRA are paired by seed");
  await shot("15-study-done");
  const md = await page.evaluate(async (id) => (await fetch(`/api/v1/studies/${id}/table?format=md`)).text(), state.studyId);
  check(md.includes("LoRA") && md.includes("±"), "the Markdown table downloads");
});

await test("two teams run studies on a public benchmark, publish them, and both see both on the public leaderboard", async () => {
  check(RIVAL_TOKEN, "needs the second team's token");
  const rival = async (method, url, body) => {
    const r = await fetch(BASE + url, { method, headers: { "Authorization": `Bearer ${RIVAL_TOKEN}`, "Content-Type": "application/json" }, body: body && JSON.stringify(body) });
    const d = await r.json().catch(() => null);
    if (!r.ok) throw new Error(`${method} ${url}: HTTP ${r.status} ${JSON.stringify(d)}`);
    return d;
  };
  await visit("/datasets");
  const name = "BIG-bench (≤60 per task) / epistemic_reasoning";
  const row = page.locator("#public-datasets tr", { hasText: name });
  check(await row.count() === 1, "the public benchmark datasets are listed");
  const href = await row.locator("a").first().getAttribute("href");
  const publicId = href.split("/").pop();
  await shot("20-public-datasets");
  const spec = (n) => ({ name: n, dataset_ids: [publicId], methods: ["lora"], budgets: [2], seeds: 2,
    training: { max_steps: 4, batch_size: 8, max_seq_len: 32, checkpoint_every: 0 } });
  // Ours through the page's session; theirs with their token.
  const ours = await page.evaluate(async (body) => {
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    const r = await fetch("/api/v1/studies", { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body) });
    if (!r.ok) throw new Error("study: HTTP " + r.status + " " + await r.text());
    return (await r.json()).study.id;
  }, spec("e2e-public"));
  const theirs = (await rival("POST", "/api/v1/studies", spec("rival-public"))).study.id;
  // Both finish (one worker serves every team).
  const deadline = Date.now() + RUN_TIMEOUT_MS;
  for (;;) {
    const d = await rival("GET", `/api/v1/studies/${theirs}`);
    const mine = await page.evaluate(async (id) => (await (await fetch(`/api/v1/studies/${id}`)).json()).progress, ours);
    if (d.progress.succeeded === 2 && mine.succeeded === 2) break;
    check(d.progress.failed + mine.failed === 0, "no run of either study failed");
    check(Date.now() < deadline, "both studies finish in time");
    await new Promise((r) => setTimeout(r, 1000));
  }
  // Nothing is public before publishing.
  const before = await rival("GET", `/api/v1/public/leaderboards/${publicId}`);
  check(before.cells.length === 0, "nothing is on the public board before publishing");
  // We publish from the study page; they publish over the API.
  await visit(`/studies/${ours}`);
  await page.getByRole("button", { name: "Publish to public boards" }).click();
  await page.getByRole("button", { name: "Unpublish" }).waitFor({ timeout: 15_000 });
  check((await page.locator("#publish-state").textContent()).includes("Published"), "the study page says it is published");
  await rival("POST", `/api/v1/studies/${theirs}/publish`);
  // We see both teams on the public leaderboard page …
  await visit(`/leaderboard/public?dataset_id=${publicId}`);
  const table = await page.locator("#public-cells").textContent();
  check(table.includes("e2e-rivals"), "the other team's cell is on the public board");
  check((await page.locator("#public-cells tbody tr.own").count()) === 1, "our own cell is on it, marked as ours");
  check((await page.locator("#public-cells tbody tr").count()) === 2, "one cell per team");
  check(table.includes("±"), "cells carry their spread");
  await shot("21-public-leaderboard");
  // … and so do they, over the API, with n and intervals.
  const board = await rival("GET", `/api/v1/public/leaderboards/${publicId}`);
  const teams = board.cells.map((c) => c.team).sort();
  check(JSON.stringify(teams) === JSON.stringify(["e2e", "e2e-rivals"]), "the other team sees both: " + JSON.stringify(teams));
  check(board.cells.every((c) => c.metrics.accuracy.n === 2 && c.metrics.accuracy.interval), "each cell has n = 2 and an interval");
});

await test("comparison page for two runs", async () => {
  check(state.runId && state.runId2, "needs two runs");
  await visit("/compare");
  await page.locator(`#pick-${state.runId}`).check();
  await page.locator(`#pick-${state.runId2}`).check();
  await page.getByRole("button", { name: "Compare" }).click();
  await page.waitForURL(/\/compare\?run=/);
  await page.locator("#compare-table").waitFor();
  const heads = await page.locator("#compare-table thead th").count();
  check(heads === 3, `two run columns (got ${heads - 1})`);
  const text = await page.locator("#compare-table").textContent();
  check(text.includes("Trainable params") && text.includes("Wall time"), "parameter counts and wall time rows");
  await page.waitForFunction(() => !document.querySelector("#curves-empty") || document.querySelector("#curves-empty").textContent !== "Loading metrics…");
  await shot("13-compare");
});

await test("download the adapter of the succeeded run", async () => {
  if (state.outcome !== "succeeded") { console.log("     (the run did not succeed: no adapter to download)"); return "skip"; }
  await visit(`/runs/${state.runId}`);
  const link = page.locator('a[data-format="peft"]');
  await link.waitFor();
  const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
  const file = await download.path();
  const bytes = fs.readFileSync(file);
  check(bytes.length > 100 && bytes.subarray(0, 2).toString() === "PK", `a zip (${bytes.length} bytes)`);
  console.log(`     downloaded ${download.suggestedFilename()} (${bytes.length} bytes)`);
  await shot("14-run-downloads");
});

await test("dashboard lists the runs and datasets", async () => {
  await visit("/");
  await page.locator(`a[href="/runs/${state.runId}"]`).first().waitFor();
  await page.locator(`a[href="/datasets/${state.datasetId}"]`).first().waitFor();
  await shot("15-dashboard");
});

await test("narrow screens get the same pages (responsive)", async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await visit(`/runs/${state.runId}`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 2, `no horizontal page scroll (overflow ${overflow}px)`);
  await shot("16-run-mobile");
  await visit("/datasets");
  await shot("17-datasets-mobile");
  await page.setViewportSize({ width: 1280, height: 900 });
});

await test("keyboard: skip link and sign out", async () => {
  await visit("/");
  await page.keyboard.press("Tab");
  check(await page.evaluate(() => document.activeElement.classList.contains("skip")), "first Tab reaches the skip link");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL((u) => u.pathname === "/sign-in");
  await visit("/datasets");
  check(new URL(page.url()).pathname === "/sign-in", "signed out: pages redirect to sign-in");
});

await context.close();
fs.rmSync(PROFILE, { recursive: true, force: true });
if (skipped) console.log(`${skipped} skipped`);
const summary = `${passed} passed, ${failed} failed`;
if (process.env.E2E_SUMMARY_FILE) fs.writeFileSync(process.env.E2E_SUMMARY_FILE, summary + "\n");
else console.log(summary);
process.exit(failed ? 1 : 0);
