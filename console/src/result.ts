// A statement's answer on a page: the status line (rows, time) apart from the result, then
// either the grid or the error alone.

import type { Table } from 'apache-arrow';
import { ServerError } from './api';
import { el, elapsed, put } from './dom';
import { Grid, type RowAction } from './grid';
import { TableText, typeName } from './values';

/** A code and message from anything thrown. */
export function describeError(e: unknown): { code: string; message: string } {
  if (e instanceof ServerError) return { code: e.code, message: e.message };
  if (e instanceof DOMException && e.name === 'AbortError') return { code: 'CANCELLED', message: 'cancelled' };
  return { code: 'CLIENT', message: e instanceof Error ? e.message : String(e) };
}

/** The error box: the code, then the message, nothing else. */
export function errorBox(e: unknown): HTMLElement {
  const { code, message } = describeError(e);
  return el('div', { class: 'error', role: 'alert' }, el('span', { class: 'code' }, code), el('span', { class: 'message' }, message));
}

export class ResultView {
  readonly root: HTMLElement;
  readonly status: HTMLElement;
  private content: HTMLElement;
  readonly grid: Grid;
  table: Table | null = null;

  constructor(className = '') {
    this.status = el('div', { class: 'status', 'aria-live': 'polite' });
    this.grid = new Grid();
    this.content = el('div', { class: 'result-content' });
    this.root = el('div', { class: `result ${className}` }, this.status, this.content);
  }

  /** Shows a result; `actions` add a button column. */
  showTable(table: Table, ms: number | null, actions?: (text: TableText) => RowAction[]): void {
    this.table = table;
    const text = new TableText(table);
    const n = table.numRows;
    const time = ms === null ? '' : ` · ${elapsed(ms)}`;
    put(this.status, el('span', { class: 'ok' }, `${n.toLocaleString('en-US')} row${n === 1 ? '' : 's'}`), time);
    this.grid.show({
      columns: table.schema.fields.map((f) => ({ name: f.name, type: typeName(f) })),
      rows: n,
      cell: (r, c) => text.cell(r, c),
      actions: actions?.(text),
    });
    put(this.content, this.grid.root);
  }

  /** Shows an error alone, the time apart. */
  showError(e: unknown, ms: number | null): void {
    this.table = null;
    put(this.status, el('span', { class: 'failed' }, 'failed'), ms === null ? '' : ` · ${elapsed(ms)}`);
    put(this.content, errorBox(e));
  }

  showBusy(what: string): void {
    put(this.status, el('span', { class: 'busy' }, what));
  }
}
