// Deliveries: the filtered list (cursor paging), recovering failures, and
// one delivery with its attempts and a retry.

import { get, post, url, path, allWebhooks, may } from '../api.js';
import {
  h, replace, link, hashPath, hashWithQuery, navigate, loading, note, clearError, showError,
  showProblem, clearFieldErrors, showFieldErrors, timeAgo, timeAbsolute, localToIso, isoToLocal,
} from '../dom.js';
import { tableWrap } from './webhooks.js';

const LIMIT = 50;
const STATUSES = ['pending', 'retrying', 'success', 'failed'];
const FILTERS = ['webhook_id', 'status', 'event_type', 'since', 'until'];

export const statusPill = (status) => h('span', { class: `status status-${status}` }, status);

// ---- Shared by the history lists ----

// The cursor each page was reached from, to go back to newer pages (the API
// only gives the next, older, cursor).
const previous = new Map();

// Newer/Older buttons for a cursor-paged list at `#/<route>?…`.
export function cursorPager(route, filters, cursor, nextCursor) {
  const go = (c) => navigate(hashWithQuery(route, { ...filters, cursor: c }));
  const newer = cursor && h('button', {
    type: 'button', id: 'prev-page', class: 'button-secondary',
    on: { click: () => go(previous.get(cursor) || '') },
  }, 'Newer');
  const older = nextCursor && h('button', {
    type: 'button', id: 'next-page', class: 'button-secondary',
    on: {
      click: () => {
        previous.set(nextCursor, cursor || '');
        go(nextCursor);
      },
    },
  }, 'Older');
  if (!newer && !older) return null;
  return h('nav', { class: 'pager', 'aria-label': 'Pages' }, newer, older);
}

// The filters in the hash query.
export function readFilters(query, names) {
  return Object.fromEntries(names.map((n) => [n, query.get(n) || '']));
}

// A labelled datetime-local input holding an ISO time.
export function timeField(id, label, iso) {
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    h('input', { id, name: id, type: 'datetime-local', value: isoToLocal(iso) }));
}

// One delivery as a table row; `names`: webhook id -> name.
export function deliveryRow(d, names) {
  const open = d.status === 'pending' || d.status === 'retrying';
  return h('tr', { dataset: { deliveryId: d.id } },
    h('td', {}, statusPill(d.status)),
    h('td', {}, h('a', { href: hashPath('deliveries', d.id), class: 'row-link' }, d.event_type)),
    h('td', {}, link(names.get(d.webhook_id) || d.webhook_id, 'webhooks', d.webhook_id)),
    h('td', { class: 'num' }, d.attempt_count),
    h('td', {}, timeAgo(d.created_at)),
    h('td', {}, open ? timeAgo(d.next_attempt_at) : '—'));
}

export function deliveriesTable(id, deliveries, names) {
  return tableWrap('Deliveries', h('table', { id },
    h('thead', {}, h('tr', {},
      ['Status', 'Event type', 'Webhook', 'Attempts', 'Created', 'Next attempt'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, deliveries.map((d) => deliveryRow(d, names)))));
}

const webhookOptions = (webhooks, selected, blank) => [
  h('option', { value: '' }, blank),
  webhooks.map((w) => h('option', { value: w.id, selected: w.id === selected }, w.name)),
];

// ---- The list ----

export async function list(view, { query }) {
  const filters = readFilters(query, FILTERS);
  const cursor = query.get('cursor') || '';
  view.append(h('h1', { tabindex: '-1' }, 'Deliveries'));

  const webhookSelect = h('select', { id: 'filter-webhook', name: 'webhook_id' },
    webhookOptions(filters.webhook_id ? [{ id: filters.webhook_id, name: filters.webhook_id }] : [], filters.webhook_id, 'All webhooks'));
  const statusSelect = h('select', { id: 'filter-status', name: 'status' },
    h('option', { value: '' }, 'Any status'),
    STATUSES.map((s) => h('option', { value: s, selected: s === filters.status }, s)));
  const form = h('form', { id: 'delivery-filters', class: 'filters', novalidate: true, role: 'search' },
    h('div', { class: 'field' }, h('label', { for: 'filter-webhook' }, 'Webhook'), webhookSelect),
    h('div', { class: 'field' }, h('label', { for: 'filter-status' }, 'Status'), statusSelect),
    h('div', { class: 'field' }, h('label', { for: 'filter-event-type' }, 'Event type'),
      h('input', { id: 'filter-event-type', name: 'event_type', type: 'text', value: filters.event_type, spellcheck: 'false' })),
    timeField('filter-since', 'From', filters.since),
    timeField('filter-until', 'To', filters.until),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', id: 'apply-filters' }, 'Apply'),
      h('a', { href: '#/deliveries', class: 'button button-secondary' }, 'Clear')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const v = (name) => form.elements.namedItem(name).value;
    navigate(hashWithQuery('deliveries', {
      webhook_id: v('webhook_id'), status: v('status'), event_type: v('event_type').trim(),
      since: localToIso(v('filter-since')), until: localToIso(v('filter-until')),
    }));
  });

  const body = h('div', {}, loading('deliveries'));
  const recoverSlot = h('div', {});
  view.append(form, body, recoverSlot);

  const [hooks, answer] = await Promise.allSettled([
    allWebhooks(),
    get(url('/v1/deliveries', { ...filters, limit: LIMIT, cursor })),
  ]);
  const webhooks = hooks.status === 'fulfilled' ? hooks.value : [];
  const names = new Map(webhooks.map((w) => [w.id, w.name]));
  if (hooks.status === 'fulfilled') {
    replace(webhookSelect, webhookOptions(webhooks, filters.webhook_id, 'All webhooks'));
    webhookSelect.value = filters.webhook_id;
    if (webhooks.length && may('manage')) recoverSlot.append(recoverPanel(webhooks, filters));
  }
  if (answer.status === 'rejected') {
    const err = answer.reason;
    showProblem(err);
    showFieldErrors(form, err.fieldErrors || [], (f) => ({
      webhook_id: 'filter-webhook', status: 'filter-status', event_type: 'filter-event-type',
      since: 'filter-since', until: 'filter-until',
    })[f]);
    replace(body, h('p', { class: 'empty' }, 'The deliveries could not be loaded.'));
    return;
  }
  const { data, next_cursor: next } = answer.value;
  const refresh = h('button', { type: 'button', id: 'refresh', class: 'button-secondary', on: { click: () => navigate(location.hash) } }, 'Refresh');
  replace(body,
    h('div', { class: 'list-head' }, h('span', {}, `${data.length} shown, newest first`), refresh),
    data.length
      ? deliveriesTable('deliveries', data, names)
      : h('p', { class: 'empty', id: 'deliveries-empty' }, 'No deliveries match. Send an event, or widen the filters.'),
    cursorPager('deliveries', filters, cursor, next));
}

// ---- Recovering failures: a dry-run count first, then the real call ----

function recoverPanel(webhooks, filters) {
  const since = filters.since || new Date(Date.now() - 86400000).toISOString();
  const result = h('div', { id: 'recover-result', 'aria-live': 'polite' });
  const count = h('button', { type: 'submit', id: 'recover-count' }, 'Count failed deliveries');
  const form = h('form', { id: 'recover-form', class: 'filters', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'recover-webhook' }, 'Webhook'),
      h('select', { id: 'recover-webhook', name: 'recover-webhook' },
        webhooks.map((w) => h('option', { value: w.id, selected: w.id === filters.webhook_id }, w.name)))),
    timeField('recover-since', 'Created from', since),
    timeField('recover-until', 'Created before (optional)', filters.until),
    h('div', { class: 'field' }, h('label', { for: 'recover-event-type' }, 'Event type (optional)'),
      h('input', { id: 'recover-event-type', name: 'recover-event-type', type: 'text', value: filters.event_type, spellcheck: 'false' })),
    h('div', { class: 'actions' }, count));

  const body = () => {
    const v = (name) => form.elements.namedItem(name).value.trim();
    const b = { since: localToIso(v('recover-since')) };
    if (v('recover-until')) b.until = localToIso(v('recover-until'));
    if (v('recover-event-type')) b.event_type = v('recover-event-type');
    return { webhook: v('recover-webhook'), body: b };
  };
  const fail = (err) => {
    showProblem(err);
    showFieldErrors(form, err.fieldErrors || [], (f) => ({
      since: 'recover-since', until: 'recover-until', event_type: 'recover-event-type',
    })[f]);
  };
  // A changed window makes the count stale.
  form.addEventListener('input', () => replace(result));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearError();
    clearFieldErrors(form);
    const { webhook, body: b } = body();
    if (!b.since) {
      showFieldErrors(form, [{ field: 'since', detail: 'Choose when the window starts.' }], () => 'recover-since');
      showError('Choose when the window starts.');
      return;
    }
    count.disabled = true;
    replace(result, note('Counting…'));
    try {
      const answer = await post(path('webhooks', webhook, 'recover'), { ...b, dry_run: true });
      const n = answer.count;
      if (n === 0) {
        replace(result, note('No failed deliveries in this window.'));
        return;
      }
      const confirmButton = h('button', { type: 'button', id: 'recover-confirm', class: 'button-danger' }, `Send ${n} again`);
      confirmButton.addEventListener('click', async () => {
        if (!window.confirm(`Send ${n} failed deliveries again?`)) return;
        clearError();
        confirmButton.disabled = true;
        try {
          const done = await post(path('webhooks', webhook, 'recover'), b);
          replace(result, note(`Requeued ${done.recovered} deliveries.`));
        } catch (err) {
          confirmButton.disabled = false;
          fail(err);
        }
      });
      replace(result, note(`${n} failed ${n === 1 ? 'delivery' : 'deliveries'} in this window.`), confirmButton);
    } catch (err) {
      replace(result);
      fail(err);
    } finally {
      count.disabled = false;
    }
  });
  return h('section', { class: 'card', 'aria-labelledby': 'recover-title', id: 'recover' },
    h('h2', { id: 'recover-title' }, 'Recover failures'),
    h('p', { class: 'help' }, 'Send every failed delivery of a webhook created in a window again. Count them first; repeating a recovery is safe.'),
    form, result);
}

// ---- One delivery ----

function attemptsTable(attempts) {
  if (!attempts.length) return h('p', { class: 'empty', id: 'no-attempts' }, 'No attempts yet.');
  return tableWrap('Attempts', h('table', { id: 'attempts' },
    h('thead', {}, h('tr', {},
      ['#', 'Attempted at', 'Status code', 'Duration', 'Error', 'Response'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, attempts.map((a) => h('tr', { dataset: { attempt: a.attempt } },
      h('td', { class: 'num' }, a.attempt),
      h('td', {}, timeAbsolute(a.attempted_at)),
      h('td', { class: 'num' }, a.status_code ?? '—'),
      h('td', { class: 'num' }, `${a.duration_ms} ms`),
      h('td', { class: 'error-text' }, a.error || '—'),
      h('td', {}, a.response ? h('pre', { class: 'response' }, a.response) : '—'))))));
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });
const FINAL = new Set(['success', 'failed']);

export async function detail(view, { id }) {
  view.append(h('p', { class: 'breadcrumb' }, h('a', { href: '#/deliveries' }, 'Deliveries')),
    h('h1', { tabindex: '-1' }, 'Delivery'));
  const body = h('div', {}, loading('the delivery'));
  view.append(body);
  let d;
  try {
    d = await get(path('deliveries', id));
  } catch (err) {
    if (err.status === 404) replace(body, h('p', { class: 'empty' }, 'There is no delivery with this id.'));
    else {
      showProblem(err);
      replace(body, h('p', { class: 'empty' }, 'The delivery could not be loaded.'));
    }
    return;
  }
  const webhook = await get(path('webhooks', d.webhook_id)).catch(() => null);

  const status = note('', { id: 'retry-status' });
  const summarySlot = h('div', {});
  const attemptsSlot = h('div', {});
  const show = (next) => {
    d = next;
    replace(summarySlot, h('dl', { class: 'summary', id: 'delivery-summary' },
      h('dt', {}, 'Status'), h('dd', {}, statusPill(d.status)),
      h('dt', {}, 'ID'), h('dd', {}, h('code', {}, d.id)),
      h('dt', {}, 'Event'), h('dd', {}, link(d.event_id, 'events', d.event_id), ` (${d.event_type})`),
      h('dt', {}, 'Webhook'), h('dd', {}, link(webhook ? webhook.name : d.webhook_id, 'webhooks', d.webhook_id)),
      h('dt', {}, 'Attempts'), h('dd', {}, d.attempt_count),
      h('dt', {}, 'Created'), h('dd', {}, timeAbsolute(d.created_at)),
      h('dt', {}, 'Updated'), h('dd', {}, timeAbsolute(d.updated_at)),
      h('dt', {}, 'Next attempt'), h('dd', {}, FINAL.has(d.status) ? '—' : timeAbsolute(d.next_attempt_at))));
    replace(attemptsSlot, attemptsTable(d.attempts));
  };

  const retry = h('button', { type: 'button', id: 'retry' }, 'Retry now');
  retry.addEventListener('click', async () => {
    clearError();
    retry.disabled = true;
    const before = d;
    try {
      await post(path('deliveries', d.id, 'retry'));
      status.textContent = 'Retry queued; waiting for the new attempt…';
      // Poll until the new attempt is recorded, for up to 30 s.
      for (let waited = 0; waited < 30 && view.isConnected; waited += 1) {
        await sleep(1000);
        if (!view.isConnected) return;
        show(await get(path('deliveries', before.id)));
        const changed = d.attempts.length > before.attempts.length
          || (FINAL.has(d.status) && d.status !== before.status);
        if (changed) {
          status.textContent = `New attempt recorded: ${d.status}.`;
          return;
        }
      }
      status.textContent = 'No new attempt within 30 seconds; it may still be queued. Reload the page later.';
    } catch (err) {
      status.textContent = '';
      showProblem(err);
    } finally {
      retry.disabled = false;
    }
  });

  replace(body,
    h('div', { class: 'actions toolbar' }, may('write') && retry,
      h('a', { href: hashPath('events', d.event_id), id: 'delivery-event', class: 'button button-secondary' }, 'View the event')),
    status, summarySlot,
    h('h2', {}, 'Attempts'), attemptsSlot);
  show(d);
}
