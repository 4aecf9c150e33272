// Explorer: the namespace / table / column tree from one request, and a table's DESCRIBE and
// manifest.

import { query } from '../api';
import type { CatalogTable, Context, Page } from '../context';
import { el, ident, put } from '../dom';
import { icon } from '../icons';
import { ResultView, errorBox } from '../result';

/** The table-level columns of DESCRIBE TABLE, shown as figures. */
const TABLE_FACTS: [string, string][] = [
  ['table_type', 'type'],
  ['storage_id', 'storage'],
  ['hot_rows', 'hot rows'],
  ['cold_rows', 'cold rows'],
  ['segments', 'segments'],
  ['schema_version', 'schema version'],
  ['options', 'options'],
];

function qualified(t: CatalogTable): string {
  return `${ident(t.namespace)}.${ident(t.name)}`;
}

export function explorerPage(ctx: Context): Page {
  const filter = el('input', { type: 'search', placeholder: 'Filter tables', class: 'filter' });
  const tree = el('div', { class: 'tree', role: 'tree' });
  const title = el('h2', {}, 'Choose a table');
  const actions = el('div', { class: 'buttons' });
  const facts = el('div', { class: 'figures facts' });
  const describe = new ResultView('describe');
  const manifest = new ResultView('manifest');
  const details = el(
    'section',
    { class: 'details' },
    el('div', { class: 'details-head' }, title, actions),
    facts,
    el('h3', {}, 'Columns'),
    describe.root,
    el('h3', {}, 'Manifest (cold segments)'),
    manifest.root,
  );
  const root = el(
    'div',
    { class: 'page explorer' },
    el(
      'aside',
      { class: 'sidebar' },
      el(
        'div',
        { class: 'sidebar-head' },
        filter,
        el(
          'button',
          {
            class: 'small',
            title: 'Load the catalog again',
            onclick: () => ctx.reloadCatalog().catch((e) => put(tree, errorBox(e))),
          },
          'Refresh',
        ),
      ),
      tree,
    ),
    details,
  );
  let selected: CatalogTable | null = null;

  async function open(t: CatalogTable): Promise<void> {
    selected = t;
    renderTree();
    put(title, icon(t.kind), ` ${t.namespace}.${t.name}`, el('span', { class: `kind kind-${t.kind.toLowerCase()}` }, t.kind));
    put(
      actions,
      el('button', { onclick: () => ctx.goto('sql', `SELECT * FROM ${qualified(t)} LIMIT 100`) }, 'Query'),
      t.kind === 'SYSTEM' || t.kind === 'VIEW'
        ? null
        : el('button', { onclick: () => ctx.goto('live', `SUBSCRIBE TO ${qualified(t)} OPTIONS (last_rows = 20)`) }, 'Subscribe'),
    );
    const hasStorage = t.kind === 'SHARED' || t.kind === 'USER' || t.kind === 'STREAM';
    describe.showBusy('loading…');
    const started = performance.now();
    put(facts);
    query(`DESCRIBE TABLE ${qualified(t)}`)
      .then((r) => {
        // DESCRIBE repeats the table's facts on every column's row: show them once.
        const first = r.table.get(0)?.toJSON() ?? {};
        put(
          facts,
          ...TABLE_FACTS.filter(([key]) => key in first).map(([key, label]) =>
            el('div', { class: 'figure', 'data-fact': key }, el('span', { class: 'value' }, String(first[key] ?? '—')), el('span', { class: 'label' }, label)),
          ),
        );
        const columns = r.table.schema.fields.map((f) => f.name).filter((n) => !TABLE_FACTS.some(([key]) => key === n));
        describe.showTable(r.table.select(columns), performance.now() - started);
      })
      .catch((e) => describe.showError(e, null));
    if (hasStorage) {
      manifest.showBusy('loading…');
      query(`SHOW MANIFEST ${qualified(t)}`)
        .then((r) => manifest.showTable(r.table, null))
        .catch((e) => manifest.showError(e, null));
    } else {
      manifest.showBusy(`${t.kind} tables have no cold segments`);
    }
  }

  function renderTree(): void {
    const words = filter.value.trim().toLowerCase();
    const out: HTMLElement[] = [];
    for (const [ns, tables] of ctx.catalog) {
      const shown = tables.filter((t) => !words || `${ns}.${t.name}`.toLowerCase().includes(words));
      if (shown.length === 0) continue;
      const items = shown.map((t) => {
        const isSelected = selected?.namespace === t.namespace && selected.name === t.name;
        const columns = isSelected
          ? el(
              'ul',
              { class: 'columns' },
              ...t.columns.map((c) =>
                el(
                  'li',
                  { class: c.primaryKey ? 'pk' : '' },
                  el('span', { class: 'col-name' }, c.name),
                  el('span', { class: 'col-type' }, c.type + (c.nullable ? '' : ' NOT NULL') + (c.primaryKey ? ' · key' : '')),
                ),
              ),
            )
          : null;
        return el(
          'li',
          { class: isSelected ? 'table selected' : 'table', role: 'treeitem', 'data-table': `${t.namespace}.${t.name}` },
          el('a', { href: '#/explorer', onclick: (e: Event) => (e.preventDefault(), void open(t)) }, icon(t.kind), el('span', {}, t.name)),
          columns,
        );
      });
      out.push(
        el(
          'li',
          { class: 'namespace', role: 'treeitem' },
          el('div', { class: 'ns-name' }, icon('NAMESPACE'), ns, el('span', { class: 'count' }, String(shown.length))),
          el('ul', {}, ...items),
        ),
      );
    }
    put(tree, out.length ? el('ul', {}, ...out) : el('p', { class: 'hint' }, 'No tables.'));
  }

  filter.addEventListener('input', renderTree);
  renderTree();
  return {
    root,
    shown() {},
    catalogChanged: renderTree,
  };
}
