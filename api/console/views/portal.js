// Customer portal links (tenant token): a session narrowed to some
// webhooks, event types or reading, its link shown once, and the live
// sessions with a revoke button.

import { get, post, del, path, allWebhooks } from '../api.js';
import {
  h, replace, loading, clearError, showProblem, clearFieldErrors, showFieldErrors, timeAgo,
  timeAbsolute,
} from '../dom.js';
import { tableWrap, copyButton } from './webhooks.js';

const LIFETIMES = [[900, '15 minutes'], [3600, '1 hour'], [86400, '24 hours'], [604800, '7 days']];
const DEFAULT_LIFETIME = 3600;

// The link, shown once: absolute, as text.
function linkPanel(answer) {
  const href = `${location.origin}${answer.url}`;
  return h('section', { class: 'card secret-card', 'aria-labelledby': 'portal-link-title' },
    h('h2', { id: 'portal-link-title', tabindex: '-1' }, 'Portal link'),
    h('p', { class: 'secret-line' }, h('code', { id: 'portal-url', class: 'secret' }, href), ' ',
      copyButton(href, { id: 'copy-portal-url' })),
    h('p', { class: 'warning' }, 'Anyone with this link opens the portal until ', timeAbsolute(answer.expires_at),
      '. Put it in an iframe or a link for your customer; it is not shown again.'),
    h('p', { class: 'help' },
      'In an iframe on your site, the server must list your site’s origin in api.portal_frame_ancestors. Revoke the session below to close it sooner.'));
}

// The form's inputs for the API's fields.
function inputFor(field) {
  if (field === 'webhook_ids' || field.startsWith('webhook_ids[')) return 'portal-webhooks';
  if (field === 'event_types' || field.startsWith('event_types[')) return 'portal-event-types';
  return { expires_in_seconds: 'portal-expires', read_only: 'portal-read-only' }[field] || null;
}

function sessionForm(webhooks, loadFailed, onCreated) {
  const boxes = webhooks.map((w, i) => h('div', { class: 'field field-check' },
    h('input', { id: `portal-webhook-${i}`, name: 'portal-webhook', type: 'checkbox', value: w.id }),
    h('label', { for: `portal-webhook-${i}` }, w.name)));
  const eventTypes = h('input', {
    id: 'portal-event-types', name: 'event_types', type: 'text', spellcheck: 'false', autocomplete: 'off',
    'aria-describedby': 'portal-event-types-help',
  });
  const readOnly = h('input', { id: 'portal-read-only', name: 'read_only', type: 'checkbox', 'aria-describedby': 'portal-read-only-help' });
  const expires = h('select', { id: 'portal-expires', name: 'expires_in_seconds' },
    LIFETIMES.map(([seconds, label]) => h('option', { value: seconds, selected: seconds === DEFAULT_LIFETIME }, label)));
  const button = h('button', { type: 'submit', id: 'create-portal-session' }, 'Create portal link');
  const form = h('form', { id: 'portal-form', class: 'form', novalidate: true },
    h('fieldset', { id: 'portal-webhooks', name: 'webhook_ids', class: 'subfields', 'aria-describedby': 'portal-webhooks-help' },
      h('legend', {}, 'Webhooks'),
      h('p', { class: 'help', id: 'portal-webhooks-help' }, 'None checked: all of them, including webhooks created later.'),
      boxes.length ? h('div', { class: 'check-list' }, boxes)
        : h('p', { class: 'empty' }, loadFailed ? 'The webhooks could not be loaded.' : 'No webhooks yet.')),
    h('div', { class: 'field' },
      h('label', { for: 'portal-event-types' }, 'Event types'),
      eventTypes,
      h('p', { class: 'help', id: 'portal-event-types-help' },
        'Comma-separated: exact types, invoice.* for every type under invoice., or * for all. Empty: every type.')),
    h('div', { class: 'field field-check' },
      readOnly,
      h('label', { for: 'portal-read-only' }, 'Read only'),
      h('p', { class: 'help', id: 'portal-read-only-help' },
        'No test events, retries or changes. A session narrowed to some webhooks or event types may send tests and retries but not change webhooks.')),
    h('div', { class: 'field' },
      h('label', { for: 'portal-expires' }, 'Valid for'),
      expires),
    h('div', { class: 'actions' }, button));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearError();
    clearFieldErrors(form);
    const ids = [...form.querySelectorAll('input[name="portal-webhook"]:checked')].map((b) => b.value);
    const types = eventTypes.value.split(',').map((s) => s.trim()).filter(Boolean);
    const body = { expires_in_seconds: Number(expires.value), read_only: readOnly.checked };
    if (ids.length) body.webhook_ids = ids;
    if (types.length) body.event_types = types;
    button.disabled = true;
    try {
      onCreated(await post('/v1/portal-sessions', body));
    } catch (err) {
      showProblem(err);
      const names = new Map(webhooks.map((w) => [w.id, w.name]));
      // `webhook_ids[2]` and `event_types[0]` said with what they name.
      const errors = err.fieldErrors || [];
      const shown = errors.map((e) => {
        const m = /^(webhook_ids|event_types)\[(\d+)\]$/.exec(e.field);
        if (!m) return e;
        const sent = (m[1] === 'webhook_ids' ? ids : types)[Number(m[2])];
        const what = m[1] === 'webhook_ids' ? names.get(sent) || sent : sent;
        return { field: m[1], detail: `“${what}” ${e.detail}` };
      });
      showFieldErrors(form, shown, inputFor);
      // Each error keeps the API's field name, for whoever reads the markup.
      errors.forEach((e, i) => {
        const id = inputFor(e.field);
        const div = id && form.querySelector(`#${CSS.escape(`${id}-error-${i}`)}`);
        if (div) div.dataset.field = e.field;
      });
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

// What a session lets its customer do, in words.
function access(s) {
  if (s.read_only) return 'read-only';
  return s.webhook_ids || s.event_types ? 'tests and retries' : 'manages webhooks';
}

async function loadSessions(slot, names) {
  replace(slot, loading('the portal sessions'));
  let sessions;
  try {
    sessions = (await get('/v1/portal-sessions')).data;
  } catch (err) {
    showProblem(err);
    replace(slot, h('p', { class: 'empty' }, 'The portal sessions could not be loaded.'));
    return;
  }
  if (!sessions.length) {
    replace(slot, h('p', { class: 'empty', id: 'portal-sessions-empty' }, 'No live portal sessions.'));
    return;
  }
  const rows = sessions.map((s) => {
    const revoke = h('button', { type: 'button', class: 'button-danger revoke-portal-session' }, 'Revoke');
    revoke.addEventListener('click', async () => {
      if (!window.confirm('Revoke this portal session? Whoever has its link loses access within seconds.')) return;
      clearError();
      revoke.disabled = true;
      try {
        await del(path('portal-sessions', s.id));
        await loadSessions(slot, names);
        document.getElementById('portal-sessions-title')?.focus(); // the button went with its row
      } catch (err) {
        showProblem(err);
        if (err.status === 404) loadSessions(slot, names); // expired or revoked meanwhile
        else revoke.disabled = false;
      }
    });
    return h('tr', { dataset: { sessionId: s.id } },
      h('td', {}, s.webhook_ids ? s.webhook_ids.map((id) => names.get(id) || id).join(', ') : 'all'),
      h('td', {}, s.event_types ? s.event_types.join(', ') : 'all'),
      h('td', {}, access(s)),
      h('td', {}, timeAgo(s.created_at)),
      h('td', {}, timeAgo(s.expires_at)),
      h('td', { class: 'row-actions' }, revoke));
  });
  replace(slot, tableWrap('Live portal sessions', h('table', { id: 'portal-sessions' },
    h('thead', {}, h('tr', {},
      ['Webhooks', 'Event types', 'Access', 'Created', 'Expires', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows))));
}

export async function page(view) {
  const linkSlot = h('div', {});
  const formSlot = h('div', {}, loading('the webhooks'));
  const sessionsSlot = h('div', { id: 'portal-sessions-list' });
  view.append(
    h('h1', { tabindex: '-1' }, 'Customer portal'),
    h('p', {}, 'Give a customer a view of your webhooks and their deliveries: a link that opens this console on your tenant, narrowed as you choose, until it expires.'),
    h('section', { class: 'card', 'aria-labelledby': 'portal-form-title' },
      h('h2', { id: 'portal-form-title' }, 'New portal link'),
      formSlot),
    linkSlot,
    h('h2', { id: 'portal-sessions-title', tabindex: '-1' }, 'Live sessions'),
    sessionsSlot);

  let webhooks = [];
  let loadFailed = false;
  try {
    webhooks = await allWebhooks();
  } catch (err) {
    showProblem(err);
    loadFailed = true;
  }
  const names = new Map(webhooks.map((w) => [w.id, w.name]));
  replace(formSlot, sessionForm(webhooks, loadFailed, (answer) => {
    replace(linkSlot, linkPanel(answer));
    linkSlot.querySelector('#portal-link-title').focus();
    loadSessions(sessionsSlot, names);
  }));
  await loadSessions(sessionsSlot, names);
}
