// The real server and a real browser for the console's tests, benchmark and screenshots: the
// `quilldb` binary ($QUILLDB_BIN) on port 0 in a temp dir, Debian's Chromium ($CHROMIUM, else
// /usr/bin/chromium) driven by playwright-core.

import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

const run = promisify(execFile);

export const BIN = process.env.QUILLDB_BIN ?? resolve(import.meta.dirname, '../../target/debug/quilldb');

/** Starts `quilldb serve` on free ports; resolves once it printed its ready line. */
export async function startServer(env = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'quilldb-console-'));
  const child = spawn(BIN, ['serve', '--data-dir', join(dir, 'data'), '--flight-addr', '127.0.0.1:0', '--http-addr', '127.0.0.1:0'], {
    env: { ...process.env, QUILLDB_LOG__LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (d) => (log += d));
  const ready = await new Promise((ok, fail) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error(`the server did not start within 60 s:\n${log}`)), 60_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /quilldb ready: flight=(\S+) http=(\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        ok({ flight: m[1], http: m[2] });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`the server exited (${code}):\n${log}`));
    });
  });
  return {
    ...ready,
    log: () => log,
    async stop() {
      const exited = new Promise((ok) => child.once('exit', ok));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((ok) => setTimeout(ok, 15_000))]);
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Runs SQL through the Flight SQL shell (`quilldb sql -c`): another client than the browser. */
export async function flightSql(server, sql, user = 'root', password = '') {
  const { stdout } = await run(BIN, ['sql', '--url', server.flight, '-u', user, '-p', password, '--format', 'csv', '-c', sql], {
    env: { ...process.env, HOME: tmpdir() },
  });
  return stdout;
}

/** Headless Chromium with a fresh profile (no network beyond loopback is needed or tried). */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * A page of the console, logged in as `user`. Every Content-Security-Policy violation and page
 * error is collected in `problems`.
 */
export async function openConsole(browser, server, user = 'root', password = '') {
  const context = await browser.newContext({ viewport: { width: 1400, height: 860 } });
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(String(e)));
  await page.goto(`${server.http}/console/`);
  await page.fill('input[name=user]', user);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');
  await page.waitForSelector('header .who');
  return { page, context, problems };
}

/** The text of the grid cell at `row` (0 = first) of column `name` inside `scope`. */
export async function gridCell(scope, name, row = 0) {
  const headers = await scope.locator('.grid-head .grid-cell .name').allTextContents();
  const col = headers.indexOf(name);
  if (col < 0) throw new Error(`no column ${name} among ${headers.join(', ')}`);
  return scope.locator(`.grid-row[data-row="${row}"] .grid-cell[data-col="${col}"]`).textContent();
}

/** Replaces the SQL editor's text by typing `sql` into it (as a person would), then runs it. */
export async function runInEditor(page, sql) {
  await page.click('.editor .cm-content');
  await page.keyboard.press('Control+A');
  await page.keyboard.type(sql);
  await page.keyboard.press('Escape');
  await page.keyboard.press('Control+Enter');
}
