// Arrow values as text, and Arrow tables as grid sources and CSV.

import { DataType, type Field, type Table, type Vector } from 'apache-arrow';

const TYPE_NAME = 'ARROW:FLIGHT:SQL:TYPE_NAME';

/** An Arrow type by its SQL name, for columns the server did not name (computed ones). */
function sqlName(type: DataType): string {
  if (DataType.isUtf8(type) || DataType.isLargeUtf8(type)) return 'TEXT';
  if (DataType.isBool(type)) return 'BOOLEAN';
  if (DataType.isInt(type)) {
    const name = { 8: 'TINYINT', 16: 'SMALLINT', 32: 'INT', 64: 'BIGINT' }[type.bitWidth] ?? 'INT';
    return type.isSigned ? name : `${name} UNSIGNED`;
  }
  if (DataType.isFloat(type)) return type.precision === 2 ? 'DOUBLE' : 'REAL';
  if (DataType.isDecimal(type)) return `DECIMAL(${type.precision}, ${type.scale})`;
  if (DataType.isTimestamp(type)) return type.timezone ? 'TIMESTAMPTZ' : 'TIMESTAMP';
  if (DataType.isDate(type)) return 'DATE';
  if (DataType.isBinary(type) || DataType.isLargeBinary(type) || DataType.isFixedSizeBinary(type)) return 'BYTEA';
  return String(type);
}

/** The column's SQL type when the server named it, else the SQL name of its Arrow type. */
export function typeName(field: Field): string {
  return field.metadata.get(TYPE_NAME) ?? sqlName(field.type);
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

function timestamp(ms: number, withZone: boolean): string {
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return String(ms);
  const iso = d.toISOString().replace('T', ' ');
  return withZone ? iso.replace('Z', '+00') : iso.slice(0, -1);
}

function json(v: unknown): string {
  return JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? x.toString() : x));
}

/** One value as text; `null` for SQL NULL. */
export function format(value: unknown, type: DataType): string | null {
  if (value === null || value === undefined) return null;
  if (DataType.isTimestamp(type)) return timestamp(Number(value), type.timezone != null);
  if (DataType.isDate(type)) {
    const d = new Date(Number(value));
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  }
  if (DataType.isBinary(type) || DataType.isFixedSizeBinary(type)) {
    const bytes = value as Uint8Array;
    return `\\x${Array.from(bytes.slice(0, 4096), (b) => b.toString(16).padStart(2, '0')).join('')}`;
  }
  if (typeof value === 'object') {
    const v = value as { toJSON?: () => unknown };
    return json(typeof v.toJSON === 'function' ? v.toJSON() : value);
  }
  return String(value);
}

/** Text access to a table's cells, by row and column. */
export class TableText {
  readonly columns: Vector[];
  readonly types: DataType[];
  constructor(readonly table: Table) {
    this.columns = table.schema.fields.map((_, i) => table.getChildAt(i) as Vector);
    this.types = table.schema.fields.map((f) => f.type);
  }
  get rows(): number {
    return this.table.numRows;
  }
  cell(row: number, col: number): string | null {
    return format(this.columns[col].get(row), this.types[col]);
  }
}

function csvField(s: string | null): string {
  if (s === null) return '';
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The table as CSV (RFC 4180; NULL as an empty field). */
export function toCsv(table: Table): Blob {
  const text = new TableText(table);
  const lines = [table.schema.fields.map((f) => csvField(f.name)).join(',')];
  for (let r = 0; r < text.rows; r++) {
    const row: string[] = [];
    for (let c = 0; c < text.columns.length; c++) row.push(csvField(text.cell(r, c)));
    lines.push(row.join(','));
  }
  return new Blob([lines.join('\r\n') + '\r\n'], { type: 'text/csv' });
}
