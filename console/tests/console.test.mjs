// The console in a real browser against the real server: log in, browse, query, fail, watch a
// change arrive, kill a live query, and see a permission error as a user without rights.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { flightSql, gridCell, launchBrowser, openConsole, runInEditor, startServer } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  await flightSql(
    server,
    `CREATE NAMESPACE chat;
     CREATE SHARED TABLE chat.messages (id BIGINT PRIMARY KEY, room TEXT NOT NULL, body TEXT);
     CREATE USER TABLE chat.drafts (id BIGINT PRIMARY KEY, body TEXT);
     CREATE STREAM TABLE chat.typing (id BIGINT PRIMARY KEY, who TEXT) WITH (TTL_SECONDS = 60);
     INSERT INTO chat.messages (id, room, body) VALUES (1, 'lobby', 'hello'), (2, 'lobby', '${'long text '.repeat(40)}');
     CREATE USER bob WITH PASSWORD 'bob-pass-123' ROLE user;`,
  );
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('log in, browse to a table and see its description', async () => {
  const { page, context, problems } = await openConsole(browser, server);
  await page.click('nav a[data-page=explorer]');
  const table = page.locator('.tree li.table[data-table="chat.messages"]');
  await table.locator('a').click();
  // The table's type is shown with its icon, its columns with their types.
  assert.equal(await table.locator('svg.icon-shared').count(), 1);
  assert.equal(await page.locator('.tree li.table[data-table="chat.drafts"] svg.icon-user').count(), 1);
  assert.equal(await page.locator('.tree li.table[data-table="chat.typing"] svg.icon-stream').count(), 1);
  assert.match(await table.locator('ul.columns').textContent(), /room.*TEXT/);
  // DESCRIBE TABLE and the manifest load beside the tree.
  const describe = page.locator('.describe');
  await describe.locator('.grid-row').first().waitFor();
  assert.equal(await page.locator('.facts .figure[data-fact=hot_rows] .value').textContent(), '2');
  assert.equal(await page.locator('.facts .figure[data-fact=storage_id] .value').textContent(), 'local');
  assert.match(await describe.locator('.grid').textContent(), /room/);
  await page.locator('.manifest .status .ok').waitFor();
  assert.deepEqual(problems, []);
  await context.close();
});

test('run a query with Ctrl+Enter and read a cell; view a long value', async () => {
  const { page, context, problems } = await openConsole(browser, server);
  await page.click('nav a[data-page=sql]');
  await runInEditor(page, 'SELECT id, room, body FROM chat.messages ORDER BY id');
  const result = page.locator('.sql-result');
  await result.locator('.grid-row[data-row="1"]').waitFor();
  assert.equal(await gridCell(result, 'room', 0), 'lobby');
  assert.equal(await gridCell(result, 'body', 0), 'hello');
  assert.match(await result.locator('.grid-head').textContent(), /BIGINT/);
  // The row count and time stand apart from the grid.
  assert.match(await result.locator('.status').textContent(), /^2 rows · \d+/);
  // A long value: right click, View value.
  await result.locator('.grid-row[data-row="1"] .grid-cell[data-col="2"]').click({ button: 'right' });
  await page.click('.context-menu >> text=View value');
  assert.equal((await page.locator('dialog pre').textContent()).trim(), 'long text '.repeat(40).trim());
  await page.click('dialog >> text=Close');
  // A double click opens it too, and the cell stays selected.
  await result.locator('.grid-row[data-row="0"] .grid-cell[data-col="2"]').dblclick();
  assert.equal((await page.locator('dialog pre').textContent()).trim(), 'hello');
  await page.click('dialog >> text=Close');
  assert.equal(await result.locator('.grid-cell.selected').textContent(), 'hello');
  // Completion offers tables and columns from the catalog; keywords are highlighted.
  await page.click('.editor .cm-content');
  await page.keyboard.press('Control+A');
  await page.keyboard.type('SELECT * FROM chat.mes');
  await page.locator('.cm-tooltip-autocomplete >> text=messages').waitFor();
  await page.keyboard.press('Escape');
  await page.keyboard.press('Control+A');
  await page.keyboard.type('SELECT chat.messages.ro');
  await page.locator('.cm-tooltip-autocomplete >> text=room').waitFor();
  await page.keyboard.press('Escape');
  assert.ok((await page.locator('.cm-content .cm-line span', { hasText: 'SELECT' }).count()) >= 1);
  // The query is in the history.
  assert.match(await page.locator('.history-list').textContent(), /SELECT id, room, body/);
  assert.deepEqual(problems, []);
  await context.close();
});

test('an error is shown alone, with its code, the time apart', async () => {
  const { page, context } = await openConsole(browser, server);
  await page.click('nav a[data-page=sql]');
  await page.click('.editor .cm-content');
  await page.keyboard.press('Control+A');
  await page.keyboard.type('SELECT nope FROM chat.messages');
  assert.equal(await page.locator('.cm-content').textContent(), 'SELECT nope FROM chat.messages');
  await page.keyboard.press('Control+Enter');
  const error = page.locator('.sql-result .error');
  await error.waitFor();
  assert.equal(await error.locator('.code').textContent(), 'NOT_FOUND');
  assert.match(await error.locator('.message').textContent(), /nope/);
  assert.doesNotMatch(await error.textContent(), /[{}"]status"/);
  assert.equal(await page.locator('.sql-result .grid').count(), 0);
  assert.match(await page.locator('.sql-result .status').textContent(), /failed · \d+/);
  await context.close();
});

test('a row inserted by another client appears live within a second, with its event type', async () => {
  const { page, context, problems } = await openConsole(browser, server);
  await page.click('nav a[data-page=live]');
  await page.fill('.subscribe-sql', "SUBSCRIBE TO chat.messages WHERE room = 'lobby'");
  await page.click('.live >> text=Subscribe');
  const grid = page.locator('.live-grid');
  await page.locator('.live .status >> text=snapshot: 2 rows').waitFor();
  assert.equal(await gridCell(grid, 'event', 0), 'snapshot');
  // Another client (the Flight SQL shell) inserts; the browser sees it within a second.
  await flightSql(server, "INSERT INTO chat.messages (id, room, body) VALUES (3, 'lobby', 'from flight')");
  const sent = Date.now();
  await grid.locator('.grid-row[data-row="0"] .grid-cell.meta-insert').waitFor({ timeout: 5000 });
  const latency = Date.now() - sent;
  assert.ok(latency < 1000, `the change took ${latency} ms to show`);
  assert.equal(await gridCell(grid, 'body', 0), 'from flight');
  assert.equal(await gridCell(grid, 'event', 0), 'insert');
  assert.match(await gridCell(grid, 'arrived', 0), /^\d\d:\d\d:\d\d\.\d{3}$/);
  assert.equal(await grid.locator('.grid-row.flash').count(), 1);
  await flightSql(server, "UPDATE chat.messages SET body = 'edited' WHERE id = 3");
  await grid.locator('.grid-row[data-row="0"] .grid-cell.meta-update').waitFor({ timeout: 5000 });
  await flightSql(server, 'DELETE FROM chat.messages WHERE id = 3');
  await grid.locator('.grid-row[data-row="0"] .grid-cell.meta-delete').waitFor({ timeout: 5000 });
  // The events log has every message: ACK, INITIAL, INITIAL_DONE, three CHANGEs.
  await page.click('.live >> text=/Events \\(\\d+\\)/');
  const log = await page.locator('dialog .events-log').textContent();
  for (const kind of ['ACK', 'INITIAL', 'INITIAL_DONE', 'CHANGE']) assert.match(log, new RegExp(kind));
  assert.equal(await page.locator('dialog .events-log li.log-change').count(), 3);
  assert.deepEqual(problems, []);
  await context.close();
});

test('a live query is killed from the Operations page', async () => {
  const watcher = await openConsole(browser, server);
  await watcher.page.click('nav a[data-page=live]');
  await watcher.page.fill('.subscribe-sql', 'SUBSCRIBE TO chat.messages');
  await watcher.page.click('.live >> text=Subscribe');
  await watcher.page.locator('.live .status >> text=/snapshot/').waitFor();
  const id = (await watcher.page.locator('.live .status').textContent()).match(/(LQ-\S+)/)?.[1];
  assert.ok(id, 'the status names the live id');

  const admin = await openConsole(browser, server);
  await admin.page.click('nav a[data-page=operations]');
  const row = admin.page.locator('.live-queries .grid-row', { hasText: id });
  await row.waitFor();
  await row.locator('button', { hasText: 'Kill' }).click();
  try {
    await watcher.page.locator('.live .status >> text=/CLOSED killed/').waitFor({ timeout: 10_000 });
  } catch (e) {
    const seen = await watcher.page.locator('.live .status').textContent();
    const adminSaw = await admin.page.locator('.operations').textContent();
    throw new Error(`no CLOSED killed: the watcher shows "${seen}"; the admin page: ${adminSaw.slice(0, 600)}\n${server.log().slice(-2000)}`, { cause: e });
  }
  // The page lists live queries again after the kill; the row goes once the server removed it.
  await admin.page.locator('.live-queries .grid-row', { hasText: id }).waitFor({ state: 'detached', timeout: 5000 });
  // Version and figures are shown.
  assert.match(await admin.page.locator('.version').textContent(), /quilldb \d/);
  assert.ok((await admin.page.locator('.figure').count()) >= 4);
  await watcher.context.close();
  await admin.context.close();
});

test('a user without rights sees a permission error rather than data', async () => {
  const { page, context } = await openConsole(browser, server, 'bob', 'bob-pass-123');
  assert.match(await page.locator('header .who').textContent(), /bob · user/);
  await page.click('nav a[data-page=sql]');
  await runInEditor(page, 'SELECT * FROM system.users');
  const error = page.locator('.sql-result .error');
  await error.waitFor();
  assert.equal(await error.locator('.code').textContent(), 'PERMISSION_DENIED');
  assert.equal(await page.locator('.sql-result .grid').count(), 0);
  // Operations: the jobs section shows the refusal; there is no users section.
  await page.click('nav a[data-page=operations]');
  await page.locator('.jobs .error .code').waitFor();
  assert.equal(await page.locator('.jobs .error .code').textContent(), 'PERMISSION_DENIED');
  assert.equal(await page.locator('.users').count(), 0);
  await context.close();
});

test('the browser API refuses a bad token and another origin', async () => {
  const bad = await fetch(`${server.http}/v1/statements`, {
    method: 'POST',
    headers: { authorization: 'Bearer nope' },
    body: 'SELECT 1',
  });
  assert.equal(bad.status, 401);
  assert.equal(bad.headers.get('x-quilldb-code'), 'UNAUTHENTICATED');
  const preflight = await fetch(`${server.http}/v1/statements`, {
    method: 'OPTIONS',
    headers: { origin: 'https://elsewhere.example', 'access-control-request-method': 'POST' },
  });
  assert.equal(preflight.status, 403);
  assert.equal(preflight.headers.get('access-control-allow-origin'), null);
  const page = await fetch(`${server.http}/console/`);
  assert.match(page.headers.get('content-security-policy'), /script-src 'self'/);
  assert.equal(page.headers.get('set-cookie'), null);
});
