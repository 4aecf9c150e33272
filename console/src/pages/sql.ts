// SQL: an editor with highlighting and completion of namespaces, tables and columns; Ctrl+Enter
// runs; the result in a virtual grid; CSV and Parquet downloads; a history kept in this browser.

import { basicSetup } from 'codemirror';
import { EditorView, keymap } from '@codemirror/view';
import { Compartment, Prec } from '@codemirror/state';
import { PostgreSQL, sql as sqlLanguage, type SQLNamespace } from '@codemirror/lang-sql';
import { query, toParquet } from '../api';
import type { Catalog, Context, Page } from '../context';
import { clock, download, el, elapsed, put } from '../dom';
import { ResultView } from '../result';
import { toCsv } from '../values';

const HISTORY_KEY = 'quilldb.history';
const HISTORY_MAX = 100;

interface HistoryEntry {
  sql: string;
  at: number;
  outcome: string;
}

function loadHistory(): HistoryEntry[] {
  try {
    const parsed: unknown = JSON.parse(localStorage.getItem(HISTORY_KEY) ?? '[]');
    return Array.isArray(parsed) ? (parsed as HistoryEntry[]) : [];
  } catch {
    return [];
  }
}

/** The catalog as lang-sql's completion schema: namespace -> table -> columns. */
export function completionSchema(catalog: Catalog): SQLNamespace {
  const out: Record<string, Record<string, string[]>> = {};
  for (const [ns, tables] of catalog) {
    out[ns] = {};
    for (const t of tables) out[ns][t.name] = t.columns.map((c) => c.name);
  }
  return out;
}

export function sqlPage(ctx: Context): Page {
  const language = new Compartment();
  const result = new ResultView('sql-result');
  const historyList = el('ol', { class: 'history-list' });
  let history = loadHistory();
  let running: AbortController | null = null;

  const languageFor = (catalog: Catalog) =>
    sqlLanguage({ dialect: PostgreSQL, schema: completionSchema(catalog), upperCaseKeywords: true });

  const runButton = el('button', { class: 'primary', title: 'Ctrl+Enter', onclick: () => void run() }, 'Run');
  const cancelButton = el('button', { disabled: true, onclick: () => running?.abort() }, 'Cancel');
  const csvButton = el('button', { disabled: true, onclick: () => result.table && download(toCsv(result.table), 'result.csv') }, 'CSV');
  const parquetButton = el('button', { disabled: true, onclick: () => void parquet() }, 'Parquet');
  const editorHost = el('div', { class: 'editor' });
  const view = new EditorView({
    parent: editorHost,
    doc: 'SELECT * FROM system.tables',
    extensions: [
      Prec.highest(
        keymap.of([
          {
            key: 'Mod-Enter',
            run: () => {
              void run();
              return true;
            },
          },
        ]),
      ),
      basicSetup,
      EditorView.cspNonce.of(document.querySelector<HTMLMetaElement>('meta[name=csp-nonce]')?.content ?? ''),
      language.of(languageFor(ctx.catalog)),
      EditorView.lineWrapping,
    ],
  });
  let lastIpc: Uint8Array | null = null;

  function renderHistory(): void {
    put(
      historyList,
      ...history.map((h) =>
        el(
          'li',
          {
            title: h.sql,
            onclick: () => view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: h.sql } }),
          },
          el('span', { class: 'when' }, clock(new Date(h.at))),
          el('span', { class: 'outcome' }, h.outcome),
          el('code', {}, h.sql.length > 140 ? `${h.sql.slice(0, 140)}…` : h.sql),
        ),
      ),
    );
  }

  function remember(sql: string, outcome: string): void {
    history = [{ sql, at: Date.now(), outcome }, ...history.filter((h) => h.sql !== sql)].slice(0, HISTORY_MAX);
    localStorage.setItem(HISTORY_KEY, JSON.stringify(history));
    renderHistory();
  }

  async function run(): Promise<void> {
    const text = view.state.doc.toString().trim().replace(/;\s*$/, '');
    if (!text || running) return;
    running = new AbortController();
    runButton.disabled = true;
    cancelButton.disabled = false;
    result.showBusy('running…');
    const started = performance.now();
    try {
      const r = await query(text, running.signal);
      const ms = performance.now() - started;
      lastIpc = r.ipc;
      result.showTable(r.table, ms);
      remember(text, `${r.table.numRows} rows · ${elapsed(ms)}`);
      if (/^\s*(create|drop|alter)\b/i.test(text)) void ctx.reloadCatalog().catch(() => undefined);
    } catch (e) {
      lastIpc = null;
      result.showError(e, performance.now() - started);
      remember(text, 'failed');
    } finally {
      running = null;
      runButton.disabled = false;
      cancelButton.disabled = true;
      csvButton.disabled = parquetButton.disabled = result.table === null;
    }
  }

  async function parquet(): Promise<void> {
    if (!lastIpc) return;
    try {
      download(await toParquet(lastIpc), 'result.parquet');
    } catch (e) {
      result.showError(e, null);
    }
  }

  const root = el(
    'div',
    { class: 'page sql' },
    el(
      'div',
      { class: 'sql-main' },
      editorHost,
      el('div', { class: 'toolbar' }, runButton, cancelButton, el('span', { class: 'spacer' }), el('span', { class: 'hint' }, 'Download'), csvButton, parquetButton),
      result.root,
    ),
    el('aside', { class: 'history' }, el('h3', {}, 'History'), historyList),
  );
  renderHistory();
  return {
    root,
    shown(arg) {
      if (arg) {
        view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: arg } });
        void run();
      }
      view.focus();
    },
    catalogChanged() {
      view.dispatch({ effects: language.reconfigure(languageFor(ctx.catalog)) });
    },
  };
}
