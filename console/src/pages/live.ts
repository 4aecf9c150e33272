// Live: a subscription's snapshot, then each change as a row with its event type and arrival
// time (the console's own columns, set apart from the table's); new rows flash; every message
// received is in the events log. The subscription stays on until Stop.

import { subscribe, type LiveEvent, type LiveHandle } from '../api';
import type { Context, Page } from '../context';
import { clock, el, put } from '../dom';
import { Grid, showDialog } from '../grid';
import { TableText, typeName } from '../values';

const OPS = ['snapshot', 'insert', 'update', 'delete'];
const MAX_ROWS = 100_000;
const MAX_LOG = 10_000;

interface LiveRow {
  event: string;
  arrived: number;
  values: (string | null)[];
}

export function livePage(_ctx: Context): Page {
  const input = el('textarea', { class: 'subscribe-sql', rows: '2', spellcheck: 'false' });
  input.value = 'SUBSCRIBE TO system.live_queries';
  const button = el('button', { class: 'primary', onclick: () => (handle ? stop() : start()) }, 'Subscribe');
  const clearButton = el('button', { onclick: () => clear() }, 'Clear');
  const logButton = el('button', { onclick: () => openLog() }, 'Events (0)');
  const indicator = el('span', { class: 'live-indicator' }, 'off');
  const status = el('div', { class: 'status', 'aria-live': 'polite' });
  const grid = new Grid('live-grid');
  const root = el(
    'div',
    { class: 'page live' },
    el('div', { class: 'live-head' }, input, el('div', { class: 'toolbar' }, button, clearButton, logButton, indicator)),
    status,
    grid.root,
  );
  let handle: LiveHandle | null = null;
  let rows: LiveRow[] = [];
  let columns: { name: string; type: string }[] = [];
  let opColumn = -1;
  let log: { at: number; e: LiveEvent }[] = [];
  let total = 0;

  function showGrid(): void {
    grid.show({
      columns: [{ name: 'event', type: 'not a column', meta: true }, { name: 'arrived', type: 'local time', meta: true }, ...columns],
      rows: rows.length,
      // Newest first.
      cell: (r, c) => {
        const row = rows[rows.length - 1 - r];
        if (c === 0) return row.event;
        if (c === 1) return clock(new Date(row.arrived));
        return row.values[c - 2];
      },
      // Changes flash; the snapshot does not.
      age: (r) => {
        const row = rows[rows.length - 1 - r];
        return row.event === 'snapshot' ? null : Date.now() - row.arrived;
      },
    });
  }

  function clear(): void {
    rows = [];
    showGrid();
  }

  function openLog(): void {
    const items = log.map(({ at, e }) =>
      el(
        'li',
        { class: `log-${e.kind.toLowerCase()}` },
        el('span', { class: 'when' }, clock(new Date(at))),
        el('span', { class: 'kind' }, e.kind),
        el('span', {}, `${e.rows?.numRows ?? 0} rows`),
        el('span', {}, `last_seq ${e.lastSeq}`),
        el('span', {}, `${e.bytes} bytes`),
        e.code || e.message ? el('span', { class: 'why' }, `${e.code} ${e.message}`) : null,
      ),
    );
    showDialog(`Events received (${log.length})`, el('ol', { class: 'events-log' }, ...items));
  }

  function onEvent(e: LiveEvent): void {
    const now = Date.now();
    log.push({ at: now, e });
    if (log.length > MAX_LOG) log = log.slice(-MAX_LOG);
    logButton.textContent = `Events (${log.length})`;
    if (e.rows) {
      const fields = e.rows.schema.fields;
      if (columns.length === 0) {
        opColumn = fields.findIndex((f) => f.name === '_op');
        columns = fields.filter((_, i) => i !== opColumn).map((f) => ({ name: f.name, type: typeName(f) }));
      }
      const text = new TableText(e.rows);
      for (let r = 0; r < text.rows; r++) {
        const op = opColumn >= 0 ? Number(text.cell(r, opColumn)) : 0;
        const values: (string | null)[] = [];
        for (let c = 0; c < fields.length; c++) if (c !== opColumn) values.push(text.cell(r, c));
        rows.push({ event: OPS[op] ?? String(op), arrived: now, values });
      }
      if (rows.length > MAX_ROWS) rows = rows.slice(-MAX_ROWS);
      total += text.rows;
      showGrid();
      // Flashing rows fade on their own; render once more when they are done.
      setTimeout(() => grid.refresh(), 1600);
    }
    const time = `[${clock(new Date(now))}]`;
    const what =
      e.kind === 'CHANGE' && e.rows
        ? `${OPS[opColumn >= 0 ? Number(new TableText(e.rows).cell(0, opColumn)) : 1]?.toUpperCase()}: +${e.rows.numRows} rows (total: ${total})`
        : e.kind === 'INITIAL_DONE'
          ? `snapshot: ${total} rows`
          : e.kind === 'CLOSED' || e.kind === 'ERROR'
            ? `${e.kind} ${e.code}: ${e.message}`
            : e.kind;
    put(status, el('span', { class: e.kind === 'ERROR' || e.kind === 'CLOSED' ? 'failed' : 'ok' }, handle ? 'Live' : 'Ended'), ` · ${e.subscriptionId || '…'} ${time} ${what}`);
  }

  function start(): void {
    const text = input.value.trim().replace(/;\s*$/, '');
    if (!text) return;
    rows = [];
    columns = [];
    log = [];
    total = 0;
    showGrid();
    put(status, el('span', { class: 'busy' }, 'subscribing…'));
    handle = subscribe(text, onEvent, (why) => {
      handle = null;
      button.textContent = 'Subscribe';
      indicator.textContent = 'off';
      indicator.classList.remove('on');
      status.append(` · ended (${why})`);
    });
    button.textContent = 'Stop';
    indicator.textContent = 'live';
    indicator.classList.add('on');
  }

  function stop(): void {
    handle?.close();
    handle = null;
    button.textContent = 'Subscribe';
    indicator.textContent = 'off';
    indicator.classList.remove('on');
    status.append(' · stopped');
  }

  showGrid();
  return {
    root,
    shown(arg) {
      if (arg) {
        if (handle) stop();
        input.value = arg;
        start();
      }
    },
  };
}
