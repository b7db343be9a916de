// Charts as SVG built node by node: attempts per bucket as stacked bars by
// outcome (the status pills' colours, from style.css classes) and a line
// over them. The SVG stretches to the width of the page (viewBox with
// preserveAspectRatio none); its scale and time labels are HTML around it,
// so they stay readable in a narrow window. The numbers are also in a
// table, for keyboards and screen readers.

import { h, append } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';
const WIDTH = 600;
const HEIGHT = 160;
const HEADROOM = 6; // above the highest bar or point, so strokes show whole

// Attempt outcomes, bottom of the stack first.
export const OUTCOMES = ['succeeded', 'retried', 'failed'];

// An SVG element; attribute names come from this code, values are set with
// setAttribute (never markup); children as in h().
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) el.setAttribute(name, String(value));
  }
  return append(el, children);
}

// "12 ms", "3.4 ms", or "—" without a value.
export function formatMs(ms) {
  if (ms === null || ms === undefined) return '—';
  return `${ms < 10 ? Number(ms.toFixed(1)) : Math.round(ms)} ms`;
}

// A bucket's start as a short local time; with the day when `withDay`.
export function formatTime(date, withDay) {
  return withDay
    ? date.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' })
    : date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function timeElement(date, withDay) {
  const iso = date.toISOString();
  return h('time', { datetime: iso, title: iso }, formatTime(date, withDay));
}

const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const present = (v) => typeof v === 'number' && Number.isFinite(v);

// The line as polylines over runs of buckets with a value (a lone value is
// drawn across its bucket).
function linePaths(values, slot, y) {
  const paths = [];
  let run = [];
  const flush = () => {
    if (run.length === 1) {
      const [[i, v]] = run;
      run = [[i - 0.4, v], [i + 0.4, v]];
    }
    if (run.length) {
      const points = run.map(([i, v]) => `${((i + 0.5) * slot).toFixed(2)},${y(v).toFixed(2)}`).join(' ');
      paths.push(svg('polyline', { class: 'chart-line', points, fill: 'none', 'vector-effect': 'non-scaling-stroke' }));
    }
    run = [];
  };
  values.forEach((v, i) => {
    if (present(v)) run.push([i, v]);
    else flush();
  });
  flush();
  return paths;
}

// A figure with the chart, its scale, legend and a table of the numbers.
// - id, label: the SVG's id and its aria-label (a summary in words)
// - buckets: [{start, succeeded, retried, failed}], oldest first
// - bucketSeconds: the width of a bucket
// - countLabel(max): the bars' scale, e.g. "12 attempts"
// - line: {name, values (number or null per bucket), format(v), shared}
//   `shared`: on the bars' scale; else on its own, labelled on the right
export function attemptsChart({ id, label, buckets, bucketSeconds, countLabel, line }) {
  const n = Math.max(1, buckets.length);
  const slot = WIDTH / n;
  const stacks = buckets.map((b) => OUTCOMES.reduce((sum, k) => sum + num(b[k]), 0));
  const lineValues = line.values.filter(present);
  const lineMax = lineValues.length ? Math.max(...lineValues) : 0;
  const countMax = Math.max(1, ...stacks, ...(line.shared ? [lineMax] : []));
  const lineTop = line.shared ? countMax : Math.max(lineMax, 1);
  const scale = (top) => (v) => HEIGHT - (v / top) * (HEIGHT - HEADROOM);
  const yCount = scale(countMax);
  const yLine = scale(lineTop);

  const first = buckets.length ? new Date(buckets[0].start) : new Date();
  const end = buckets.length
    ? new Date(new Date(buckets[buckets.length - 1].start).getTime() + bucketSeconds * 1000)
    : new Date();
  const withDay = end.getTime() - first.getTime() > 86400000 || first.toDateString() !== end.toDateString();

  const bars = buckets.map((b, i) => {
    const start = new Date(b.start);
    const stop = new Date(start.getTime() + bucketSeconds * 1000);
    const counts = OUTCOMES.map((k) => `${num(b[k])} ${k}`).join(', ');
    const lineText = present(line.values[i]) ? `; ${line.name} ${line.format(line.values[i])}` : '';
    const g = svg('g', { class: 'chart-bucket' },
      svg('title', {}, `${formatTime(start, withDay)}–${formatTime(stop, false)}: ${counts}${lineText}`),
      svg('rect', { class: 'chart-hit', x: (i * slot).toFixed(2), y: 0, width: slot.toFixed(2), height: HEIGHT }));
    let below = 0;
    for (const k of OUTCOMES) {
      const v = num(b[k]);
      if (v <= 0) continue;
      const bottom = yCount(below);
      const top = yCount(below + v);
      g.append(svg('rect', {
        class: `bar-${k}`, x: (i * slot + slot * 0.12).toFixed(2), y: top.toFixed(2),
        width: (slot * 0.76).toFixed(2), height: (bottom - top).toFixed(2),
      }));
      below += v;
    }
    return g;
  });

  const chart = svg('svg', {
    id, class: 'chart-svg', role: 'img', 'aria-label': label, viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    preserveAspectRatio: 'none', focusable: 'false',
  },
  svg('line', { class: 'chart-grid', x1: 0, x2: WIDTH, y1: HEADROOM, y2: HEADROOM, 'vector-effect': 'non-scaling-stroke' }),
  svg('line', { class: 'chart-grid', x1: 0, x2: WIDTH, y1: HEIGHT / 2, y2: HEIGHT / 2, 'vector-effect': 'non-scaling-stroke' }),
  bars,
  linePaths(line.values, slot, yLine),
  svg('line', { class: 'chart-axis', x1: 0, x2: WIDTH, y1: HEIGHT - 0.5, y2: HEIGHT - 0.5, 'vector-effect': 'non-scaling-stroke' }));

  const legend = h('ul', { class: 'chart-legend' },
    OUTCOMES.map((k) => h('li', {}, h('span', { class: `swatch swatch-${k}` }), k)),
    h('li', {}, h('span', { class: 'swatch swatch-line' }), line.shared ? line.name : `${line.name} (right scale)`));

  const table = h('table', { id: `${id}-table` },
    h('thead', {}, h('tr', {},
      ['Start', ...OUTCOMES.map((k) => k[0].toUpperCase() + k.slice(1)), line.name].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, buckets.map((b, i) => h('tr', {},
      h('td', {}, timeElement(new Date(b.start), withDay)),
      OUTCOMES.map((k) => h('td', { class: 'num' }, num(b[k]))),
      h('td', { class: 'num' }, present(line.values[i]) ? line.format(line.values[i]) : '—')))));

  return h('figure', { class: 'chart' },
    h('div', { class: 'chart-scale', 'aria-hidden': 'true' },
      h('span', {}, Math.max(0, ...stacks) > 0 || (line.shared && lineMax > 0) ? countLabel(countMax) : ''),
      !line.shared && h('span', { class: 'chart-scale-line' }, lineMax > 0 ? `${line.name} ${line.format(lineMax)}` : '')),
    chart,
    h('div', { class: 'chart-times' }, timeElement(first, withDay), timeElement(end, withDay)),
    legend,
    h('details', { class: 'chart-numbers' },
      h('summary', {}, 'Show the numbers'),
      h('div', { class: 'table-wrap', role: 'region', 'aria-label': 'The numbers of the chart', tabindex: '0' }, table)));
}
