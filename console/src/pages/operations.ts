// Operations: the server's version and key metrics, jobs and live queries with kill buttons,
// and users for dba and up. Each section shows its own permission error rather than data.

import { metricsText, query } from '../api';
import type { Context, Page } from '../context';
import { el, literal, put } from '../dom';
import { ResultView, errorBox } from '../result';

/** Metrics shown as figures: Prometheus name (without the `quill_` prefix) and label. */
const FIGURES: [string, string][] = [
  ['active_sessions', 'sessions'],
  ['live_subscriptions', 'subscriptions'],
  ['flight_requests_total', 'calls'],
  ['statements_total', 'statements'],
  ['rows_written_total', 'rows written'],
  ['rows_streamed_total', 'rows streamed'],
  ['live_notifications_total', 'notifications'],
  ['process_resident_memory_bytes', 'resident memory'],
  ['process_open_fds', 'open files'],
];

/** Sums every sample of each metric in Prometheus text. */
export function parseMetrics(text: string): Map<string, number> {
  const sums = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const value = Number(m[2]);
    if (Number.isFinite(value)) sums.set(m[1], (sums.get(m[1]) ?? 0) + value);
  }
  return sums;
}

function human(name: string, v: number): string {
  if (name.endsWith('_bytes')) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
  }
  return Math.round(v).toLocaleString('en-US');
}

export function operationsPage(ctx: Context): Page {
  const version = el('div', { class: 'version' });
  const figures = el('div', { class: 'figures' });
  const jobs = new ResultView('jobs');
  const live = new ResultView('live-queries');
  const users = new ResultView('users');
  const problem = el('div');
  const isDba = ctx.role === 'dba' || ctx.role === 'system';

  async function refresh(): Promise<void> {
    put(problem);
    metricsText()
      .then((text) => {
        const build = /build_info\{([^}]*)\}/.exec(text)?.[1] ?? '';
        const label = (name: string) => new RegExp(`${name}="([^"]*)"`).exec(build)?.[1];
        put(version, build ? `quilldb ${label('version')} (commit ${label('commit')})` : '');
        const sums = parseMetrics(text);
        put(
          figures,
          ...FIGURES.flatMap(([name, label]) => {
            const v = sums.get(`quill_${name}`) ?? sums.get(name);
            return v === undefined ? [] : [el('div', { class: 'figure', 'data-metric': name }, el('span', { class: 'value' }, human(name, v)), el('span', { class: 'label' }, label))];
          }),
        );
      })
      .catch((e) => put(figures, errorBox(e)));
    query('SELECT * FROM system.jobs ORDER BY created_at DESC LIMIT 500')
      .then((r) =>
        jobs.showTable(r.table, null, (text) => {
          const id = r.table.schema.fields.findIndex((f) => f.name === 'job_id');
          const status = r.table.schema.fields.findIndex((f) => f.name === 'status');
          return [
            {
              label: 'Kill',
              show: (row) => ['queued', 'running'].includes(String(text.cell(row, status))),
              run: (row) => void kill(`KILL JOB ${literal(String(text.cell(row, id)))}`),
            },
          ];
        }),
      )
      .catch((e) => jobs.showError(e, null));
    query('SELECT * FROM system.live_queries')
      .then((r) =>
        live.showTable(r.table, null, (text) => {
          const id = r.table.schema.fields.findIndex((f) => f.name === 'live_id');
          return [{ label: 'Kill', run: (row) => void kill(`KILL LIVE QUERY ${literal(String(text.cell(row, id)))}`) }];
        }),
      )
      .catch((e) => live.showError(e, null));
    if (isDba) {
      query('SELECT * FROM system.users')
        .then((r) => users.showTable(r.table, null))
        .catch((e) => users.showError(e, null));
    }
  }

  async function kill(sql: string): Promise<void> {
    try {
      await query(sql);
    } catch (e) {
      put(problem, errorBox(e));
      return;
    }
    await refresh();
    // A killed live query leaves system.live_queries once its stream ended: look again.
    setTimeout(() => void refresh(), 700);
  }

  const root = el(
    'div',
    { class: 'page operations' },
    el('div', { class: 'ops-head' }, el('h2', {}, 'Server'), version, el('button', { class: 'small', onclick: () => void refresh() }, 'Refresh')),
    figures,
    problem,
    el('h3', {}, 'Jobs'),
    jobs.root,
    el('h3', {}, 'Live queries'),
    live.root,
    isDba ? el('h3', {}, 'Users') : null,
    isDba ? users.root : null,
  );
  return {
    root,
    shown() {
      void refresh();
    },
  };
}
