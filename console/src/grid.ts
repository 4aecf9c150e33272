// A virtual-scrolling grid: only the rows in view exist in the page, so 100k rows scroll as
// smoothly as 10. Cells are selectable; a right click (or a double click) offers the value in
// full, which long text needs.

import { el, put } from './dom';

const ROW_HEIGHT = 26;
const OVERSCAN = 8;

/** A column of the grid. `meta` columns are the console's own (event type, arrival time). */
export interface Column {
  name: string;
  type: string;
  meta?: boolean;
}

/** A button shown in each row, when `show` allows. */
export interface RowAction {
  label: string;
  run(row: number): void;
  show?(row: number): boolean;
}

/** What the grid shows. `cell` answers `null` for SQL NULL. */
export interface GridSource {
  columns: Column[];
  rows: number;
  cell(row: number, col: number): string | null;
  rowClass?(row: number): string | null;
  /** Milliseconds since the row arrived, for rows that should flash (a live change). */
  age?(row: number): number | null;
  actions?: RowAction[];
}

/** How long a new row flashes. */
export const FLASH_MS = 1500;

let menu: HTMLElement | null = null;

function closeMenu(): void {
  menu?.remove();
  menu = null;
}
document.addEventListener('click', closeMenu);
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') closeMenu();
});

/** A modal dialog with a title, `content`, and Close. */
export function showDialog(title: string, content: HTMLElement, ...buttons: HTMLElement[]): void {
  const dialog = el(
    'dialog',
    { class: 'value-dialog' },
    el('h3', {}, title),
    content,
    el('div', { class: 'buttons' }, ...buttons, el('button', { onclick: () => dialog.close() }, 'Close')),
  );
  dialog.addEventListener('close', () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}

/** Shows a value in full in a dialog. */
export function showValue(title: string, value: string | null): void {
  showDialog(
    title,
    el('pre', { class: value === null ? 'null' : '' }, value ?? 'NULL'),
    el('button', { onclick: () => navigator.clipboard?.writeText(value ?? '') }, 'Copy'),
  );
}

export class Grid {
  readonly root: HTMLElement;
  private head: HTMLElement;
  private spacer: HTMLElement;
  private body: HTMLElement;
  private source: GridSource = { columns: [], rows: 0, cell: () => null };
  private widths: number[] = [];
  private selected: [number, number] | null = null;
  private frame = 0;
  /** Bumped whenever what the rows show changes; with the row range, says whether to redraw. */
  private version = 0;
  private drawn = '';

  constructor(className = '') {
    this.head = el('div', { class: 'grid-head', role: 'row' });
    this.body = el('div', { class: 'grid-rows' });
    this.spacer = el('div', { class: 'grid-spacer' }, this.body);
    this.root = el('div', { class: `grid ${className}`, role: 'grid', tabindex: '0' }, this.head, this.spacer);
    this.root.addEventListener('scroll', () => this.schedule());
    new ResizeObserver(() => this.schedule()).observe(this.root);
    this.body.addEventListener('click', (e) => this.select(e));
    this.body.addEventListener('dblclick', (e) => {
      const at = this.select(e);
      if (at) this.view(at);
    });
    this.body.addEventListener('contextmenu', (e) => {
      const at = this.select(e);
      if (!at) return;
      e.preventDefault();
      this.menu(e as MouseEvent, at);
    });
  }

  /** Shows `source`, measuring the columns from the first rows. */
  show(source: GridSource): void {
    this.source = source;
    this.selected = null;
    this.version++;
    this.widths = source.columns.map((c, i) => {
      let chars = Math.max(c.name.length, c.type.length + 2);
      for (let r = 0; r < Math.min(source.rows, 100); r++) {
        chars = Math.max(chars, (source.cell(r, i) ?? 'NULL').length);
      }
      return Math.min(Math.max(chars * 7.5 + 20, 64), 360);
    });
    const actionsWidth = source.actions?.length ? 90 : 0;
    const total = this.widths.reduce((a, b) => a + b, 0) + actionsWidth;
    this.spacer.style.width = `${total}px`;
    put(
      this.head,
      ...source.columns.map((c, i) => {
        const cell = el(
          'div',
          { class: c.meta ? 'grid-cell meta' : 'grid-cell', role: 'columnheader', title: `${c.name} ${c.type}` },
          el('span', { class: 'name' }, c.name),
          el('span', { class: 'type' }, c.type),
        );
        cell.style.width = `${this.widths[i]}px`;
        return cell;
      }),
      actionsWidth ? el('div', { class: 'grid-cell actions' }) : null,
    );
    this.head.style.width = `${total}px`;
    this.render();
  }

  /** Renders again: rows were added or changed. */
  refresh(): void {
    this.version++;
    this.schedule();
  }

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  private render(): void {
    const { rows, columns } = this.source;
    this.spacer.style.height = `${rows * ROW_HEIGHT}px`;
    const headHeight = this.head.offsetHeight;
    const top = Math.max(0, this.root.scrollTop - headHeight);
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const visible = Math.ceil((this.root.clientHeight || 600) / ROW_HEIGHT) + 2 * OVERSCAN;
    const last = Math.min(rows, first + visible);
    // Rows stay the same elements while the same rows show the same data: a scroll within the
    // overscan or a resize does not rebuild them under a click in progress.
    const key = `${this.version}:${first}:${last}`;
    if (key === this.drawn) return;
    this.drawn = key;
    const out: HTMLElement[] = [];
    for (let r = first; r < last; r++) {
      const extra = this.source.rowClass?.(r);
      const row = el('div', { class: extra ? `grid-row ${extra}` : 'grid-row', role: 'row', 'data-row': String(r) });
      row.style.top = `${r * ROW_HEIGHT}px`;
      const age = this.source.age?.(r);
      if (age !== null && age !== undefined && age < FLASH_MS) {
        // Rows are rebuilt as the page scrolls: the flash resumes where it was.
        row.classList.add('flash');
        row.style.animationDelay = `-${Math.round(age)}ms`;
      }
      for (let c = 0; c < columns.length; c++) {
        const value = this.source.cell(r, c);
        const sel = this.selected && this.selected[0] === r && this.selected[1] === c;
        let cls = 'grid-cell';
        if (columns[c].meta) cls += ` meta meta-${value}`;
        if (value === null) cls += ' null';
        if (sel) cls += ' selected';
        const cell = el('div', { class: cls, role: 'gridcell', 'data-col': String(c) }, value ?? 'NULL');
        cell.style.width = `${this.widths[c]}px`;
        row.append(cell);
      }
      const actions = this.source.actions?.filter((a) => a.show?.(r) ?? true) ?? [];
      if (this.source.actions?.length) {
        row.append(
          el(
            'div',
            { class: 'grid-cell actions' },
            ...actions.map((a) =>
              el(
                'button',
                {
                  class: 'small danger',
                  onclick: (e: Event) => {
                    e.stopPropagation();
                    a.run(r);
                  },
                },
                a.label,
              ),
            ),
          ),
        );
      }
      out.push(row);
    }
    put(this.body, ...out);
  }

  private select(e: Event): [number, number] | null {
    const cell = (e.target as HTMLElement).closest<HTMLElement>('.grid-cell[data-col]');
    const row = cell?.closest<HTMLElement>('.grid-row');
    if (!cell || !row) return null;
    this.selected = [Number(row.dataset.row), Number(cell.dataset.col)];
    // In place: rebuilding the rows would lose a double click's second click.
    this.body.querySelector('.grid-cell.selected')?.classList.remove('selected');
    cell.classList.add('selected');
    return this.selected;
  }

  private view([r, c]: [number, number]): void {
    showValue(`${this.source.columns[c].name} · row ${r + 1}`, this.source.cell(r, c));
  }

  private menu(e: MouseEvent, at: [number, number]): void {
    closeMenu();
    const value = this.source.cell(at[0], at[1]);
    menu = el(
      'div',
      { class: 'context-menu', role: 'menu' },
      el('button', { role: 'menuitem', onclick: () => this.view(at) }, 'View value'),
      el('button', { role: 'menuitem', onclick: () => navigator.clipboard?.writeText(value ?? '') }, 'Copy value'),
    );
    menu.style.left = `${e.clientX}px`;
    menu.style.top = `${e.clientY}px`;
    document.body.append(menu);
  }
}
