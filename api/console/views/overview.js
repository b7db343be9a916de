// The admin's overview (GET /v1/overview): the last hour in numbers and per
// minute, the queues' backlog, and the webhooks Herald disabled.

import { get } from '../api.js';
import { h, replace, loading, clearError, showProblem, timeAgo } from '../dom.js';
import { tableWrap } from './webhooks.js';
import { attemptsChart, formatTime } from '../chart.js';

const QUEUES = ['dispatch', 'deliveries', 'retrying'];

// 0.25 -> "25%", 0.0123 -> "1.2%"; null -> "—".
export function percent(ratio) {
  if (typeof ratio !== 'number' || !Number.isFinite(ratio)) return '—';
  const p = ratio * 100;
  if (p > 0 && p < 0.1) return '<0.1%';
  return `${p < 10 ? Number(p.toFixed(1)) : Math.round(p)}%`;
}

// "dispatch 0 · deliveries 3 · retrying unknown".
function backlogText(queues) {
  return QUEUES.map((q) => {
    const n = queues?.[q];
    return `${q} ${typeof n === 'number' ? n : 'unknown'}`;
  }).join(' · ');
}

const clock = (date) => h('time', { datetime: date.toISOString(), title: date.toISOString() },
  date.toLocaleTimeString());

function tile(id, term, value, help, wide) {
  return h('div', { class: wide ? 'tile tile-wide' : 'tile' },
    h('dt', {}, term),
    h('dd', { id }, value),
    help && h('dd', { class: 'tile-help' }, help));
}

function chartLabel(o) {
  const t = o.totals;
  const attempts = (m) => m.succeeded + m.retried + m.failed;
  const busiest = o.minutes.reduce((best, m) => (!best || attempts(m) > attempts(best) ? m : best), null);
  const base = `Events and attempts per minute over the last hour: ${t.events} events; `
    + `${t.succeeded} attempts succeeded, ${t.retried} retried, ${t.failed} failed.`;
  if (!busiest || attempts(busiest) === 0) return base;
  return `${base} The busiest minute, from ${formatTime(new Date(busiest.start), false)}, had ${attempts(busiest)} attempts and ${busiest.events} events.`;
}

function disabledList(o) {
  const list = o.disabled_webhooks || [];
  if (!list.length) {
    return h('div', { id: 'overview-disabled' }, h('p', { class: 'empty' }, 'No webhook is disabled.'));
  }
  const rows = list.map((w) => h('tr', { dataset: { webhookId: w.id } },
    h('td', {}, w.name),
    h('td', {}, h('code', {}, w.tenant_id)),
    h('td', { class: 'url' }, w.url),
    h('td', { class: 'reason' }, w.disabled_reason || '—'),
    h('td', {}, timeAgo(w.updated_at))));
  return h('div', { id: 'overview-disabled' },
    o.webhooks_disabled > list.length
      && h('p', { class: 'help' }, `The latest ${list.length} of ${o.webhooks_disabled} disabled webhooks.`),
    tableWrap('Disabled webhooks', h('table', { id: 'overview-disabled-table' },
      h('thead', {}, h('tr', {}, ['Name', 'Tenant', 'URL', 'Reason', 'Disabled'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows))));
}

function show(body, o) {
  const t = o.totals;
  const unknown = QUEUES.every((q) => typeof o.queues?.[q] !== 'number');
  replace(body,
    h('p', { class: 'help', id: 'overview-since' }, 'The hour since ', clock(new Date(o.since)),
      ', as of ', clock(new Date()), '.'),
    h('dl', { class: 'tiles', 'aria-label': 'The last hour' },
      tile('overview-events', 'Events', t.events, 'received in the last hour'),
      tile('overview-succeeded', 'Succeeded', t.succeeded, 'attempts'),
      tile('overview-retried', 'Retried', t.retried, 'attempts, a retry to come'),
      tile('overview-failed', 'Failed', t.failed, 'attempts that ended a delivery'),
      tile('overview-failure-ratio', 'Failure ratio', percent(t.failure_ratio), t.failure_ratio === null ? 'no attempts' : null)),
    h('dl', { class: 'tiles', 'aria-label': 'Now' },
      tile('overview-backlog', 'Queued', backlogText(o.queues), unknown ? 'the broker could not be asked' : 'messages waiting', true),
      tile('overview-tenants', 'Tenants', o.tenants),
      tile('overview-webhooks', 'Webhooks', o.webhooks, `${o.webhooks_disabled} disabled`)),
    h('section', { 'aria-labelledby': 'overview-chart-title' },
      h('h2', { id: 'overview-chart-title' }, 'Per minute'),
      attemptsChart({
        id: 'overview-chart',
        label: chartLabel(o),
        buckets: o.minutes,
        bucketSeconds: o.bucket_seconds || 60,
        countLabel: (max) => `${max} per minute`,
        line: { name: 'events', values: o.minutes.map((m) => m.events), format: String, shared: true },
      })),
    h('section', { 'aria-labelledby': 'overview-disabled-title' },
      h('h2', { id: 'overview-disabled-title' }, 'Disabled webhooks'),
      disabledList(o)));
}

async function load(body) {
  if (body.getAttribute('aria-busy') === 'true') return; // already loading
  clearError();
  body.setAttribute('aria-busy', 'true');
  try {
    show(body, await get('/v1/overview'));
  } catch (err) {
    if (err.status === 404 || err.status === 405) {
      replace(body, h('p', { class: 'empty', id: 'overview-missing' },
        'This server has no overview yet (GET /v1/overview is not available). ',
        h('a', { href: '#/tenants' }, 'Go to the tenants'), '.'));
    } else {
      showProblem(err);
      replace(body, h('p', { class: 'empty' }, 'The overview could not be loaded.'));
    }
  } finally {
    body.removeAttribute('aria-busy');
  }
}

export async function page(view) {
  const body = h('div', { id: 'overview' }, loading('the overview'));
  const refresh = h('button', { type: 'button', id: 'refresh', class: 'button-secondary' }, 'Refresh');
  refresh.addEventListener('click', () => load(body));
  view.append(
    h('div', { class: 'page-head' }, h('h1', { tabindex: '-1' }, 'Overview'), refresh),
    body);
  await load(body);
}
