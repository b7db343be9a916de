// A webhook's statistics on its page: attempts by outcome and the p95
// latency over the last hour, day or week (GET /v1/webhooks/{id}/stats).

import { get, url, path } from '../api.js';
import { h, replace, showProblem } from '../dom.js';
import { attemptsChart, formatMs, formatTime } from '../chart.js';

const PERIODS = [
  { value: '1h', button: '1 hour', words: 'the last hour' },
  { value: '24h', button: '24 hours', words: 'the last 24 hours' },
  { value: '7d', button: '7 days', words: 'the last 7 days' },
];

// "1 minute", "15 minutes", "2 hours".
export function bucketWords(seconds) {
  if (seconds % 3600 === 0) return seconds === 3600 ? 'hour' : `${seconds / 3600} hours`;
  if (seconds % 60 === 0) return seconds === 60 ? 'minute' : `${seconds / 60} minutes`;
  return `${seconds} seconds`;
}

// "12 succeeded · 1 retried · 0 failed · p50 12 ms · p95 40 ms · p99 80 ms".
function totalsText(t) {
  if (!t.succeeded && !t.retried && !t.failed) return 'no attempts in this period';
  return [
    `${t.succeeded} succeeded`, `${t.retried} retried`, `${t.failed} failed`,
    `p50 ${formatMs(t.p50_ms)}`, `p95 ${formatMs(t.p95_ms)}`, `p99 ${formatMs(t.p99_ms)}`,
  ].join(' · ');
}

// The chart's aria-label: what it shows, in words.
function summary(stats, period) {
  const t = stats.totals;
  const per = bucketWords(stats.bucket_seconds);
  if (!t.succeeded && !t.retried && !t.failed) {
    return `Attempts per ${per} over ${period.words}: none.`;
  }
  let busiest = null;
  for (const b of stats.buckets) {
    const n = b.succeeded + b.retried + b.failed;
    if (!busiest || n > busiest.n) busiest = { n, start: b.start };
  }
  const p95s = stats.buckets.map((b) => b.p95_ms).filter((v) => typeof v === 'number');
  const withDay = stats.bucket_seconds >= 3600;
  return `Attempts per ${per} over ${period.words}: ${t.succeeded} succeeded, ${t.retried} retried, ${t.failed} failed. `
    + `The busiest ${per} had ${busiest.n} attempts, from ${formatTime(new Date(busiest.start), withDay)}. `
    + (p95s.length ? `The p95 latency peaked at ${formatMs(Math.max(...p95s))}.` : '');
}

function chart(stats, period) {
  return attemptsChart({
    id: 'stats-chart',
    label: summary(stats, period),
    buckets: stats.buckets,
    bucketSeconds: stats.bucket_seconds,
    countLabel: (max) => `${max} attempt${max === 1 ? '' : 's'} per ${bucketWords(stats.bucket_seconds)}`,
    line: { name: 'p95 latency', values: stats.buckets.map((b) => b.p95_ms), format: formatMs, shared: false },
  });
}

// The statistics section for webhook `id`; loads itself.
export function statsSection(id) {
  const current = PERIODS[1]; // 24 hours first
  let asked = 0; // answers to older clicks are dropped
  // The totals line is a live region: it says what a period button changed.
  const totals = h('p', { id: 'stats-totals', class: 'stats-totals', role: 'status' }, 'Loading the statistics…');
  const body = h('div', { id: 'stats-body' });
  const buttons = PERIODS.map((p) => h('button', {
    type: 'button', id: `stats-${p.value}`, class: 'button-secondary',
    'aria-pressed': String(p === current), on: { click: () => load(p) },
  }, p.button));

  async function load(period) {
    for (const [i, b] of buttons.entries()) b.setAttribute('aria-pressed', String(PERIODS[i] === period));
    const ask = ++asked;
    body.setAttribute('aria-busy', 'true');
    let stats;
    try {
      stats = await get(url(path('webhooks', id, 'stats'), { period: period.value }));
    } catch (err) {
      if (ask !== asked) return;
      body.removeAttribute('aria-busy');
      showProblem(err);
      replace(totals);
      replace(body, h('p', { class: 'empty', id: 'stats-error' }, 'The statistics could not be loaded.'));
      return;
    }
    if (ask !== asked) return;
    body.removeAttribute('aria-busy');
    replace(totals, totalsText(stats.totals));
    const figure = chart(stats, period);
    figure.querySelector('svg').setAttribute('data-period', period.value); // which answer shows
    replace(body, figure);
  }

  load(current);
  return h('section', { id: 'stats', class: 'card', 'aria-labelledby': 'stats-title' },
    h('div', { class: 'page-head' },
      h('h2', { id: 'stats-title' }, 'Delivery attempts'),
      h('div', { class: 'segmented', role: 'group', 'aria-label': 'Period' }, buttons)),
    totals, body);
}
