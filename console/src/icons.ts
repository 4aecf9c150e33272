// Table-type icons (inline SVG built in the page: no inline script or style involved).

const NS = 'http://www.w3.org/2000/svg';

const PATHS: Record<string, string> = {
  // A grid: a table everyone with access shares.
  SHARED: 'M2 3h12v10H2z M2 6.5h12 M2 10h12 M6 3v10',
  // A person: rows per user.
  USER: 'M8 8a2.6 2.6 0 1 0 0-5.2A2.6 2.6 0 0 0 8 8z M3 14c0-2.8 2.2-4.6 5-4.6s5 1.8 5 4.6',
  // A bolt: an event stream with a TTL.
  STREAM: 'M9.5 1.5 3.5 9h4l-1 5.5 6-7.5h-4z',
  // A gear: the server's own tables.
  SYSTEM: 'M8 5.5a2.5 2.5 0 1 0 0 5 2.5 2.5 0 0 0 0-5z M8 1.5v2 M8 12.5v2 M1.5 8h2 M12.5 8h2 M3.4 3.4l1.4 1.4 M11.2 11.2l1.4 1.4 M3.4 12.6l1.4-1.4 M11.2 4.8l1.4-1.4',
  // An eye: a view.
  VIEW: 'M1.5 8s2.5-4.5 6.5-4.5S14.5 8 14.5 8s-2.5 4.5-6.5 4.5S1.5 8 1.5 8z M8 6a2 2 0 1 0 0 4 2 2 0 0 0 0-4z',
  NAMESPACE: 'M1.5 4.5h5l1.5 1.5h6.5v7h-13z',
};

/** The icon of a table type (or `NAMESPACE`), titled with the type. */
export function icon(kind: string): SVGSVGElement {
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('class', `icon icon-${kind.toLowerCase()}`);
  svg.setAttribute('aria-label', kind);
  const title = document.createElementNS(NS, 'title');
  title.textContent = kind === 'NAMESPACE' ? 'namespace' : `${kind} table`;
  svg.append(title);
  const path = document.createElementNS(NS, 'path');
  path.setAttribute('d', PATHS[kind] ?? PATHS.SHARED);
  svg.append(path);
  return svg;
}
