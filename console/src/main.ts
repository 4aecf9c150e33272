// The console: a login, then four pages (Explorer, SQL, Live, Operations) over the browser API.

import './style.css';
import { ServerError, catalog, login, logout, query, session } from './api';
import { catalogTree, type Catalog, type Context, type Page, type PageName } from './context';
import { el, put } from './dom';
import { errorBox } from './result';
import { explorerPage } from './pages/explorer';
import { livePage } from './pages/live';
import { operationsPage } from './pages/operations';
import { sqlPage } from './pages/sql';

const app = document.getElementById('app') as HTMLElement;

const TITLES: Record<PageName, string> = {
  explorer: 'Explorer',
  sql: 'SQL',
  live: 'Live',
  operations: 'Operations',
};

function loginScreen(message?: string): void {
  const user = el('input', { name: 'user', autocomplete: 'username', value: 'root', required: true });
  const password = el('input', { name: 'password', type: 'password', autocomplete: 'current-password' });
  const problem = el('div', { class: 'login-problem' });
  if (message) put(problem, errorBox(new ServerError('UNAUTHENTICATED', message)));
  const form = el(
    'form',
    { class: 'login' },
    el('h1', {}, 'QuillDB'),
    el('label', {}, 'User', user),
    el('label', {}, 'Password', password),
    el('button', { type: 'submit', class: 'primary' }, 'Log in'),
    problem,
    el('p', { class: 'hint' }, 'root has no password from this machine until one is set.'),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    put(problem);
    try {
      await login(user.value, password.value);
      await start();
    } catch (err) {
      put(problem, errorBox(err));
    }
  });
  put(app, form);
  user.focus();
}

async function whoAmI(): Promise<{ user: string; role: string }> {
  const { table } = await query('SELECT CURRENT_USER() AS user_name, CURRENT_ROLE() AS role_name');
  const row = table.get(0);
  return { user: String(row?.user_name), role: String(row?.role_name) };
}

async function start(): Promise<void> {
  let who: { user: string; role: string };
  let tree: Catalog;
  try {
    who = await whoAmI();
    tree = catalogTree(await catalog());
  } catch (e) {
    session.token = null;
    loginScreen(e instanceof ServerError ? e.message : String(e));
    return;
  }
  const nav = el('nav', { class: 'tabs' });
  const main = el('main');
  const pages = new Map<PageName, Page>();
  let current: PageName = 'explorer';
  const ctx: Context = {
    user: who.user,
    role: who.role,
    catalog: tree,
    async reloadCatalog() {
      ctx.catalog = catalogTree(await catalog());
      for (const p of pages.values()) p.catalogChanged?.();
    },
    goto(page, sql) {
      location.hash = `#/${page}`;
      show(page, sql);
    },
    authLost(message) {
      session.token = null;
      loginScreen(message);
    },
  };
  pages.set('explorer', explorerPage(ctx));
  pages.set('sql', sqlPage(ctx));
  pages.set('live', livePage(ctx));
  pages.set('operations', operationsPage(ctx));
  const show = (page: PageName, arg?: string) => {
    current = page;
    for (const [name, p] of pages) p.root.hidden = name !== page;
    for (const a of nav.querySelectorAll('a')) a.classList.toggle('active', a.dataset.page === page);
    pages.get(page)?.shown(arg);
  };
  for (const name of pages.keys()) {
    nav.append(el('a', { href: `#/${name}`, 'data-page': name }, TITLES[name]));
  }
  put(main, ...[...pages.values()].map((p) => p.root));
  const header = el(
    'header',
    {},
    el('span', { class: 'brand' }, 'QuillDB'),
    nav,
    el('span', { class: 'who', title: 'logged in as' }, `${who.user} · ${who.role}`),
    el(
      'button',
      {
        class: 'small',
        onclick: async () => {
          await logout();
          location.hash = '';
          loginScreen();
        },
      },
      'Log out',
    ),
  );
  put(app, header, main);
  const fromHash = () => {
    const name = location.hash.replace('#/', '') as PageName;
    show(pages.has(name) ? name : current);
  };
  window.onhashchange = fromHash;
  fromHash();
}

if (session.token) void start();
else loginScreen();
