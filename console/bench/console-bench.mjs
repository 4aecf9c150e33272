// The console's speed in headless Chromium against the real server ($QUILLDB_BIN, a release
// build for figures that mean anything): the Explorer tree of 100 namespaces x 50 tables from one
// request, and the first screen of a 100k-row result. Prints a table and writes
// benches/results/<time>-console.json and benches/results/latest-console.json.
//
//   QUILLDB_BIN=$CARGO_TARGET_DIR/release/quilldb node console/bench/console-bench.mjs

import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { launchBrowser, openConsole, startServer } from '../tests/harness.mjs';

const NAMESPACES = Number(process.env.BENCH_NAMESPACES ?? 100);
const TABLES = Number(process.env.BENCH_TABLES ?? 50);
const ROWS = Number(process.env.BENCH_ROWS ?? 100_000);
const RUNS = 5;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const best = (xs) => Math.min(...xs);

async function api(server, token, sql) {
  const resp = await fetch(`${server.http}/v1/statements`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
    body: sql,
  });
  if (!resp.ok) throw new Error(`${sql}: ${resp.status} ${await resp.text()}`);
  await resp.arrayBuffer();
}

const server = await startServer();
const browser = await launchBrowser();
try {
  const login = await fetch(`${server.http}/v1/login`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from('root:').toString('base64')}` },
  });
  const token = (await login.text()).trim();

  let started = performance.now();
  for (let n = 0; n < NAMESPACES; n++) {
    await api(server, token, `CREATE NAMESPACE ns${n}`);
    const creates = [];
    for (let t = 0; t < TABLES; t++) {
      const kind = ['SHARED', 'USER', 'STREAM'][t % 3];
      const ttl = kind === 'STREAM' ? ' WITH (TTL_SECONDS = 60)' : '';
      creates.push(
        api(server, token, `CREATE ${kind} TABLE ns${n}.t${t} (id BIGINT PRIMARY KEY, name TEXT NOT NULL, body TEXT, score DOUBLE, created_at TIMESTAMP DEFAULT NOW())${ttl}`),
      );
    }
    await Promise.all(creates);
  }
  const setupTables = performance.now() - started;
  await api(server, token, 'CREATE NAMESPACE big');
  await api(server, token, 'CREATE TABLE big.rows (id BIGINT PRIMARY KEY, name TEXT, score DOUBLE, created_at TIMESTAMP)');
  await api(
    server,
    token,
    `INSERT INTO big.rows SELECT value, 'row ' || CAST(value AS VARCHAR), CAST(value AS DOUBLE) / 7, NOW() FROM generate_series(1, ${ROWS})`,
  );

  // The catalog endpoint alone.
  const catalogMs = [];
  let catalogBytes = 0;
  let catalogRows = 0;
  for (let i = 0; i < RUNS; i++) {
    started = performance.now();
    const resp = await fetch(`${server.http}/v1/catalog`, { headers: { authorization: `Bearer ${token}` } });
    const body = new Uint8Array(await resp.arrayBuffer());
    catalogMs.push(performance.now() - started);
    catalogBytes = body.length;
  }

  // The Explorer: requests made and time to the rendered tree.
  const { page, context } = await openConsole(browser, server);
  const catalogRequests = [];
  page.on('request', (r) => {
    if (r.url().includes('/v1/')) catalogRequests.push(new URL(r.url()).pathname);
  });
  const treeMs = [];
  await page.click('nav a[data-page=explorer]');
  for (let i = 0; i < RUNS; i++) {
    // From an empty tree, so that the wait below sees the new one.
    await page.evaluate(() => document.querySelector('.tree')?.replaceChildren());
    started = performance.now();
    await page.click('.sidebar-head button');
    await page.waitForFunction(
      (n) => document.querySelectorAll('.tree li.table').length >= n,
      NAMESPACES * TABLES,
    );
    treeMs.push(performance.now() - started);
  }
  catalogRows = await page.locator('.tree li.table').count();
  const requestsPerTree = catalogRequests.filter((p) => p === '/v1/catalog').length;
  const otherRequests = catalogRequests.filter((p) => p !== '/v1/catalog').length;

  // A 100k-row result: Ctrl+Enter to the first grid row on screen, then to the last row.
  await page.click('nav a[data-page=sql]');
  const firstScreenMs = [];
  const lastRowMs = [];
  for (let i = 0; i < RUNS; i++) {
    await page.click('.editor .cm-content');
    await page.keyboard.press('Control+A');
    await page.keyboard.type(`SELECT * FROM big.rows`);
    await page.evaluate(() => document.querySelector('.sql-result .result-content')?.replaceChildren());
    started = performance.now();
    await page.keyboard.press('Control+Enter');
    await page.locator('.sql-result .grid-row[data-row="0"]').waitFor();
    firstScreenMs.push(performance.now() - started);
    const status = await page.locator('.sql-result .status').textContent();
    if (!status.startsWith(ROWS.toLocaleString('en-US'))) throw new Error(`unexpected result: ${status}`);
    started = performance.now();
    await page.evaluate(() => {
      const g = document.querySelector('.sql-result .grid');
      g.scrollTop = g.scrollHeight;
    });
    await page.locator(`.sql-result .grid-row[data-row="${ROWS - 1}"]`).waitFor();
    lastRowMs.push(performance.now() - started);
  }
  const domRows = await page.locator('.sql-result .grid-row').count();
  await context.close();

  const result = {
    when: new Date().toISOString(),
    binary: process.env.QUILLDB_BIN ?? null,
    namespaces: NAMESPACES,
    tables_per_namespace: TABLES,
    setup_create_tables_s: +(setupTables / 1000).toFixed(1),
    catalog_endpoint_ms: { best: +best(catalogMs).toFixed(1), median: +median(catalogMs).toFixed(1) },
    catalog_bytes: catalogBytes,
    explorer_tree_tables_rendered: catalogRows,
    explorer_requests_per_load: { catalog: requestsPerTree / RUNS, other: otherRequests },
    explorer_tree_ms: { best: +best(treeMs).toFixed(1), median: +median(treeMs).toFixed(1) },
    result_rows: ROWS,
    first_screen_ms: { best: +best(firstScreenMs).toFixed(1), median: +median(firstScreenMs).toFixed(1) },
    scroll_to_last_row_ms: { best: +best(lastRowMs).toFixed(1), median: +median(lastRowMs).toFixed(1) },
    grid_rows_in_dom: domRows,
  };
  console.log('console benchmark (headless Chromium, real server)');
  console.log(`  catalog ${NAMESPACES}x${TABLES}: GET /v1/catalog ${result.catalog_endpoint_ms.median} ms median (${catalogBytes} bytes); Explorer tree ${result.explorer_tree_ms.median} ms median, ${result.explorer_requests_per_load.catalog} request per load, ${catalogRows} tables shown`);
  console.log(`  ${ROWS} rows: first screen ${result.first_screen_ms.median} ms median (best ${result.first_screen_ms.best}), last row after a scroll ${result.scroll_to_last_row_ms.median} ms, ${domRows} rows in the DOM`);
  const dir = resolve(import.meta.dirname, '../../benches/results');
  mkdirSync(dir, { recursive: true });
  const stamp = result.when.replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  writeFileSync(`${dir}/${stamp}-console.json`, JSON.stringify(result, null, 2) + '\n');
  writeFileSync(`${dir}/latest-console.json`, JSON.stringify(result, null, 2) + '\n');
} finally {
  await browser.close();
  await server.stop();
}
