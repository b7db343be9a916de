// Events: the filtered list (cursor paging, newest first) and one event with
// its payload and deliveries.

import { get, url, path, allWebhooks } from '../api.js';
import {
  h, replace, hashPath, hashWithQuery, navigate, loading, showProblem, showFieldErrors,
  timeAgo, timeAbsolute, localToIso, rawMember, rawJsonPre, jsonPre,
} from '../dom.js';
import { tableWrap } from './webhooks.js';
import { cursorPager, readFilters, timeField, deliveriesTable } from './deliveries.js';

const LIMIT = 50;
const FILTERS = ['event_type', 'since', 'until'];

export async function list(view, { query }) {
  const filters = readFilters(query, FILTERS);
  const cursor = query.get('cursor') || '';
  view.append(h('h1', { tabindex: '-1' }, 'Events'));

  const form = h('form', { id: 'event-filters', class: 'filters', novalidate: true, role: 'search' },
    h('div', { class: 'field' }, h('label', { for: 'filter-event-type' }, 'Event type'),
      h('input', { id: 'filter-event-type', name: 'event_type', type: 'text', value: filters.event_type, spellcheck: 'false' })),
    timeField('filter-since', 'Received from', filters.since),
    timeField('filter-until', 'Received before', filters.until),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', id: 'apply-filters' }, 'Apply'),
      h('a', { href: '#/events', class: 'button button-secondary' }, 'Clear')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const v = (name) => form.elements.namedItem(name).value;
    navigate(hashWithQuery('events', {
      event_type: v('event_type').trim(),
      since: localToIso(v('filter-since')),
      until: localToIso(v('filter-until')),
    }));
  });
  const body = h('div', {}, loading('events'));
  view.append(form, body);

  let answer;
  try {
    answer = await get(url('/v1/events', { ...filters, limit: LIMIT, cursor }));
  } catch (err) {
    showProblem(err);
    showFieldErrors(form, err.fieldErrors || [], (f) => ({
      event_type: 'filter-event-type', since: 'filter-since', until: 'filter-until',
    })[f]);
    replace(body, h('p', { class: 'empty' }, 'The events could not be loaded.'));
    return;
  }
  const { data, next_cursor: next } = answer;
  const rows = data.map((e) => h('tr', { dataset: { eventId: e.id } },
    h('td', {}, h('a', { href: hashPath('events', e.id), class: 'row-link' }, e.event_type)),
    h('td', {}, h('code', {}, e.id)),
    h('td', {}, e.severity || '—'),
    h('td', {}, e.source || '—'),
    h('td', {}, timeAgo(e.occurred_at)),
    h('td', {}, timeAgo(e.received_at))));
  const refresh = h('button', { type: 'button', id: 'refresh', class: 'button-secondary', on: { click: () => navigate(location.hash) } }, 'Refresh');
  replace(body,
    h('div', { class: 'list-head' }, h('span', {}, `${data.length} shown, newest first`), refresh),
    data.length
      ? tableWrap('Events', h('table', { id: 'events' },
        h('thead', {}, h('tr', {},
          ['Type', 'ID', 'Severity', 'Source', 'Occurred', 'Received'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows)))
      : h('p', { class: 'empty', id: 'events-empty' }, 'No events match. Publish one with POST /v1/events, or widen the filters.'),
    cursorPager('events', filters, cursor, next));
}

export async function detail(view, { id }) {
  const heading = h('h1', { tabindex: '-1' }, 'Event');
  view.append(h('p', { class: 'breadcrumb' }, h('a', { href: '#/events' }, 'Events')), heading);
  const body = h('div', {}, loading('the event'));
  view.append(body);
  let text;
  let event;
  try {
    // The body text, so that the payload shows exactly as stored (JSON.parse
    // would round large numbers).
    text = await get(path('events', id), { raw: true });
    event = JSON.parse(text);
  } catch (err) {
    if (err.status === 404) {
      replace(body, h('p', { class: 'empty' },
        'There is no event with this id. An event just accepted may take a moment to appear: reload in a few seconds.'));
    } else {
      showProblem(err);
      replace(body, h('p', { class: 'empty' }, 'The event could not be loaded.'));
    }
    return;
  }
  replace(heading, event.event_type);
  const webhooks = await allWebhooks().catch(() => []);
  const names = new Map(webhooks.map((w) => [w.id, w.name]));
  const raw = rawMember(text, 'data');
  const payload = raw === null ? jsonPre(event.data, { id: 'payload' }) : rawJsonPre(raw, { id: 'payload' });
  payload.tabIndex = 0; // scrollable by keyboard

  replace(body,
    h('dl', { class: 'summary', id: 'event-summary' },
      h('dt', {}, 'ID'), h('dd', {}, h('code', {}, event.id)),
      h('dt', {}, 'Type'), h('dd', {}, event.event_type),
      h('dt', {}, 'Severity'), h('dd', {}, event.severity || '—'),
      h('dt', {}, 'Source'), h('dd', {}, event.source || '—'),
      h('dt', {}, 'Occurred'), h('dd', {}, timeAbsolute(event.occurred_at)),
      h('dt', {}, 'Received'), h('dd', {}, timeAbsolute(event.received_at))),
    h('h2', {}, 'Payload'),
    payload,
    h('h2', {}, 'Deliveries'),
    event.deliveries.length
      ? deliveriesTable('event-deliveries', event.deliveries, names)
      : h('p', { class: 'empty' }, 'No deliveries for this event: no active webhook subscribed to its type.'),
    h('p', {}, h('a', { href: hashWithQuery('deliveries', { event_type: event.event_type }) }, 'All deliveries of this event type')));
}
