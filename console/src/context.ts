// What the pages share: who is logged in, the catalog tree, and navigation.

import type { Table } from 'apache-arrow';

/** A column of the catalog. */
export interface CatalogColumn {
  name: string;
  type: string;
  nullable: boolean;
  primaryKey: boolean;
}

/** A table of the catalog; `kind` is SHARED, USER, STREAM, SYSTEM or VIEW. */
export interface CatalogTable {
  namespace: string;
  name: string;
  kind: string;
  columns: CatalogColumn[];
}

/** Namespaces, in order, each with its tables in order. */
export type Catalog = Map<string, CatalogTable[]>;

/** The catalog of `GET /v1/catalog` (a row per column) as a tree. */
export function catalogTree(table: Table): Catalog {
  const tree: Catalog = new Map();
  const get = (name: string) => table.getChild(name);
  const ns = get('namespace');
  const tn = get('table_name');
  const kind = get('table_type');
  const col = get('column_name');
  const ty = get('data_type');
  const nul = get('is_nullable');
  const pk = get('is_primary_key');
  let last: CatalogTable | null = null;
  for (let i = 0; i < table.numRows; i++) {
    const n = String(ns?.get(i));
    const t = String(tn?.get(i));
    if (!last || last.namespace !== n || last.name !== t) {
      last = { namespace: n, name: t, kind: String(kind?.get(i)), columns: [] };
      if (!tree.has(n)) tree.set(n, []);
      tree.get(n)?.push(last);
    }
    const c = col?.get(i);
    if (c !== null && c !== undefined) {
      last.columns.push({ name: String(c), type: String(ty?.get(i)), nullable: Boolean(nul?.get(i)), primaryKey: Boolean(pk?.get(i)) });
    }
  }
  return tree;
}

/** The pages of the console. */
export type PageName = 'explorer' | 'sql' | 'live' | 'operations';

export interface Context {
  user: string;
  role: string;
  catalog: Catalog;
  reloadCatalog(): Promise<void>;
  /** Opens a page; `sql` prefills the SQL or Live page's editor. */
  goto(page: PageName, sql?: string): void;
  /** The token stopped working: back to the login. */
  authLost(message: string): void;
}

/** A page: built once, shown and hidden, so that a subscription lives on across pages. */
export interface Page {
  root: HTMLElement;
  shown(arg?: string): void;
  catalogChanged?(): void;
}
