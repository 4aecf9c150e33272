// Screenshots of each console page for docs/console/ (the README shows them), taken in headless
// Chromium against a real server with a little data:
//
//   QUILLDB_BIN=$CARGO_TARGET_DIR/debug/quilldb node console/bench/screenshots.mjs

import { resolve } from 'node:path';
import { mkdirSync } from 'node:fs';
import { flightSql, launchBrowser, openConsole, startServer } from '../tests/harness.mjs';

const out = resolve(import.meta.dirname, '../../docs/console');
mkdirSync(out, { recursive: true });
const server = await startServer();
const browser = await launchBrowser();
try {
  await flightSql(
    server,
    `CREATE NAMESPACE chat;
     CREATE SHARED TABLE chat.messages (id BIGINT PRIMARY KEY DEFAULT SNOWFLAKE_ID(), room TEXT NOT NULL, author TEXT, body TEXT, created_at TIMESTAMP DEFAULT NOW());
     CREATE USER TABLE chat.drafts (id BIGINT PRIMARY KEY, body TEXT);
     CREATE STREAM TABLE chat.typing (id BIGINT PRIMARY KEY, who TEXT) WITH (TTL_SECONDS = 30);
     CREATE VIEW chat.lobby AS SELECT * FROM chat.messages WHERE room = 'lobby';
     CREATE NAMESPACE shop;
     CREATE SHARED TABLE shop.orders (id BIGINT PRIMARY KEY, customer TEXT, total DOUBLE, status TEXT);
     INSERT INTO chat.messages (room, author, body) VALUES
       ('lobby', 'alice', 'hello everyone'), ('lobby', 'bob', 'hi alice!'),
       ('dev', 'carol', 'the flush finished'), ('lobby', 'alice', 'who is up for lunch?'),
       ('dev', 'bob', '${'a long message that needs the View value dialog to be read in full; '.repeat(3)}');
     INSERT INTO shop.orders SELECT value, 'customer ' || CAST(value % 17 AS VARCHAR), CAST(value AS DOUBLE) * 3.5, CASE WHEN value % 3 = 0 THEN 'shipped' ELSE 'open' END FROM generate_series(1, 2000);
     STORAGE FLUSH TABLE chat.messages;`,
  );
  const { page } = await openConsole(browser, server);

  await page.click('nav a[data-page=explorer]');
  await page.locator('.tree li.table[data-table="chat.messages"] a').click();
  await page.locator('.describe .grid-row').first().waitFor();
  await page.locator('.manifest .status .ok').waitFor();
  await page.screenshot({ path: `${out}/explorer.png` });

  await page.click('nav a[data-page=sql]');
  await page.click('.editor .cm-content');
  await page.keyboard.press('Control+A');
  await page.keyboard.type("SELECT status, count(*) AS orders, sum(total) AS revenue\nFROM shop.orders GROUP BY status ORDER BY status");
  await page.keyboard.press('Control+Enter');
  await page.locator('.sql-result .grid-row').first().waitFor();
  await page.keyboard.press('Control+A');
  await page.keyboard.type('SELECT * FROM shop.orders ORDER BY id');
  await page.keyboard.press('Control+Enter');
  await page.locator('.sql-result .status >> text=2,000 rows').waitFor();
  await page.locator('.sql-result .grid-row[data-row="2"] .grid-cell[data-col="1"]').click();
  await page.screenshot({ path: `${out}/sql.png` });

  await page.click('nav a[data-page=live]');
  await page.fill('.subscribe-sql', "SUBSCRIBE TO chat.messages WHERE room = 'lobby'");
  await page.click('.live >> text=Subscribe');
  await page.locator('.live .status >> text=/snapshot/').waitFor();
  await flightSql(server, "INSERT INTO chat.messages (room, author, body) VALUES ('lobby', 'dave', 'just joined')");
  await flightSql(server, "UPDATE chat.messages SET body = 'hello everyone :)' WHERE author = 'alice' AND body = 'hello everyone'");
  await page.locator('.live-grid .grid-cell.meta-update').waitFor();
  await page.screenshot({ path: `${out}/live.png` });

  await page.click('nav a[data-page=operations]');
  await page.locator('.jobs .grid-row').first().waitFor();
  await page.locator('.live-queries .grid-row').first().waitFor();
  await page.locator('.users .grid-row').first().waitFor();
  await page.screenshot({ path: `${out}/operations.png` });

  const fresh = await browser.newContext({ viewport: { width: 1400, height: 860 } });
  const login = await fresh.newPage();
  await login.goto(`${server.http}/console/`);
  await login.screenshot({ path: `${out}/login.png` });
  console.log(`screenshots in ${out}`);
} finally {
  await browser.close();
  await server.stop();
}
