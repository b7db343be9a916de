// Webhooks: the list (paged), the create page, and one webhook's page with
// its statistics, actions (test, rotate secret or signing key,
// enable/disable, delete) and edit form; a portal session sees only the
// actions it may take.

import { get, post, patch, del, url, path, may } from '../api.js';
import {
  h, replace, link, hashPath, hashWithQuery, loading, note, clearError, showProblem,
  timeAgo, timeAbsolute,
} from '../dom.js';
import { webhookForm } from './webhook-form.js';
import { AUTH_TYPES } from './webhook-auth.js';
import { statsSection } from './stats.js';

const PER_PAGE = 20;

// active / disabled as a pill, with the reason Herald disabled it.
export function stateCell(w) {
  const state = w.is_active ? 'active' : 'disabled';
  return [
    h('span', { class: `status status-${state}` }, state),
    !w.is_active && w.disabled_reason && h('span', { class: 'reason' }, ` ${w.disabled_reason}`),
  ];
}

// A table in a horizontally scrollable, focusable region.
export function tableWrap(label, table) {
  return h('div', { class: 'table-wrap', role: 'region', 'aria-label': label, tabindex: '0' }, table);
}

export async function list(view, { query }) {
  const page = Math.max(1, Number.parseInt(query.get('page'), 10) || 1);
  view.append(h('div', { class: 'page-head' },
    h('h1', { tabindex: '-1' }, 'Webhooks'),
    may('manage') && h('a', { href: '#/webhooks/new', id: 'new-webhook', class: 'button' }, 'New webhook')));
  const body = h('div', {}, loading('webhooks'));
  view.append(body);

  let answer;
  try {
    answer = await get(url('/v1/webhooks', { page, per_page: PER_PAGE }));
  } catch (err) {
    showProblem(err);
    replace(body, h('p', { class: 'empty' }, 'The webhooks could not be loaded.'));
    return;
  }
  if (answer.data.length === 0) {
    replace(body, answer.total > 0
      ? h('p', { class: 'empty' }, 'No webhooks on this page. ', h('a', { href: '#/webhooks' }, 'Go to the first page'), '.')
      : h('p', { class: 'empty', id: 'webhooks-empty' }, may('manage')
        ? 'No webhooks yet — create one to start receiving events.'
        : 'No webhooks here yet.'));
    return;
  }

  const rows = answer.data.map((w) => h('tr', { dataset: { webhookId: w.id } },
    h('td', {}, link(w.name, 'webhooks', w.id)),
    h('td', { class: 'url' }, w.url),
    h('td', {}, w.event_types.join(', ')),
    h('td', {}, stateCell(w)),
    h('td', { class: 'num' }, w.delivery_success_count),
    h('td', { class: 'num' }, w.delivery_failure_count),
    h('td', {}, timeAgo(w.last_triggered_at, 'never'))));
  const table = h('table', { id: 'webhooks' },
    h('caption', { class: 'visually-hidden' }, 'Webhooks'),
    h('thead', {}, h('tr', {},
      ['Name', 'URL', 'Event types', 'State', 'Succeeded', 'Failed', 'Last delivery'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows));

  const pages = Math.max(1, Math.ceil(answer.total / answer.per_page));
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' },
    page > 1 && h('a', { href: hashWithQuery('webhooks', { page: page - 1 }), id: 'prev-page', class: 'button button-secondary' }, 'Previous'),
    h('span', {}, `Page ${page} of ${pages} (${answer.total} webhook${answer.total === 1 ? '' : 's'})`),
    page < pages && h('a', { href: hashWithQuery('webhooks', { page: page + 1 }), id: 'next-page', class: 'button button-secondary' }, 'Next'));
  replace(body, tableWrap('Webhooks', table), pager);
}

// A button that copies `text`, where the browser allows it (else null).
export function copyButton(text, attrs = {}) {
  return navigator.clipboard ? h('button', {
    type: 'button', class: 'button-secondary', ...attrs,
    on: {
      click: async (event) => {
        try {
          await navigator.clipboard.writeText(text);
          event.target.textContent = 'Copied';
        } catch {
          event.target.textContent = 'Copy failed: select the text';
        }
      },
    },
  }, 'Copy') : null;
}

// A secret shown once, with a copy button where the browser allows it.
export function secretPanel(title, secret, ...text) {
  const code = h('code', { id: 'secret', class: 'secret' }, secret);
  const copy = copyButton(secret);
  return h('section', { class: 'card secret-card', 'aria-labelledby': 'secret-title' },
    h('h2', { id: 'secret-title', tabindex: '-1' }, title),
    h('p', { class: 'secret-line' }, code, ' ', copy),
    h('p', { class: 'warning' }, ...text));
}

export function create(view) {
  view.append(h('h1', { tabindex: '-1' }, 'New webhook'));
  if (!may('manage')) {
    view.append(h('p', { class: 'empty', id: 'cannot-create' }, 'This portal session cannot create webhooks. ',
      h('a', { href: '#/webhooks' }, 'Back to the webhooks'), '.'));
    return;
  }
  view.append(h('p', {}, 'Herald sends each matching event to this URL, signed, and retries it when the endpoint fails.'));
  const slot = h('div', {});
  view.append(slot);
  slot.append(webhookForm({
    onSaved(w) {
      replace(slot,
        secretPanel('Webhook created', w.secret,
          'This signing secret will not be shown again. Copy it now and give it to the receiver to verify signatures.'),
        h('p', {}, h('a', { href: hashPath('webhooks', w.id), id: 'go-to-webhook', class: 'button' }, `Go to ${w.name}`)));
      slot.querySelector('#secret-title').focus();
    },
  }));
}

const authLabel = (type) => AUTH_TYPES.find(([value]) => value === type)?.[1] ?? type;

// A new ed25519 public key: not a secret, but what every receiver needs.
function keyPanel(answer) {
  return h('section', { class: 'card secret-card', 'aria-labelledby': 'signing-key-title' },
    h('h2', { id: 'signing-key-title', tabindex: '-1' }, 'New signing key'),
    h('p', { class: 'secret-line' }, h('code', { id: 'new-public-key', class: 'secret' }, answer.public_key ?? ''), ' ',
      copyButton(answer.public_key ?? '', { id: 'copy-new-public-key' })),
    h('p', { class: 'warning' }, 'Give receivers this public key to verify v1a signatures.',
      answer.previous_public_key_expires_at
        ? [' The previous key keeps signing beside it until ', timeAbsolute(answer.previous_public_key_expires_at), '.']
        : ''));
}

// The webhook's fields as a description list.
function summary(w) {
  const signing = w.signing || {};
  const schemes = [
    signing.standard && 'Standard Webhooks (v1, HMAC)',
    signing.simple && `simple (${signing.simple_header || 'the server’s header'})`,
    signing.ed25519 && 'ed25519 (v1a)',
  ].filter(Boolean);
  const headerLines = Object.entries(w.headers || {}).map(([k, v]) => `${k}: ${v}`);
  const rows = [
    ['ID', h('code', {}, w.id)],
    ['State', stateCell(w)],
    ['URL', h('code', { class: 'url' }, w.url)],
    ['Event types', w.event_types.join(', ')],
    ['Description', w.description || '—'],
    ['Body format', w.format],
    w.format === 'custom' && ['Content type', w.content_type],
    w.format === 'custom' && ['Template', h('pre', { class: 'template' }, w.template ?? '')],
    ['Timeout', `${w.timeout_seconds} s`],
    ['Retries', w.retry_schedule
      ? `${w.retry_attempts} retries after ${w.retry_schedule.join(', ')}`
      : `${w.retry_attempts} retries, from ${w.retry_backoff_seconds} s ×${w.exponential_base}`
        + `${w.max_delay_seconds ? `, at most ${w.max_delay_seconds} s` : ''}${w.jitter ? ', with jitter' : ''}`],
    ['Rate limit', w.rate_limit === null ? 'none' : `${w.rate_limit} per second`],
    ['TLS verification', w.verify_ssl ? 'on' : 'off'],
    ['Signing', schemes.join(', ') || '—'],
    signing.public_key && ['Public key (ed25519)', h('span', { class: 'secret-line' },
      h('code', { id: 'signing-public-key', class: 'secret' }, signing.public_key), copyButton(signing.public_key, { id: 'copy-public-key' }))],
    signing.previous_public_key && ['Previous public key', [
      h('code', { id: 'signing-previous-public-key' }, signing.previous_public_key),
      ' (signs beside the new key until ', timeAbsolute(signing.previous_public_key_expires_at), ')']],
    ['Outbound auth', w.auth ? authLabel(w.auth.type) : 'none'],
    ['Headers', headerLines.length ? h('pre', { class: 'headers' }, headerLines.join('\n')) : 'none'],
    ['Deliveries', `${w.delivery_success_count} succeeded, ${w.delivery_failure_count} failed`],
    ['Last delivery', timeAgo(w.last_triggered_at, 'never')],
    ['Created', timeAbsolute(w.created_at)],
    ['Updated', timeAbsolute(w.updated_at)],
  ].filter(Boolean);
  return h('dl', { id: 'webhook-summary', class: 'summary' },
    rows.map(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]));
}

// How a test call went; the endpoint's answer as text.
function testResult(r) {
  const outcome = r.success ? 'success' : 'failed';
  return h('section', { class: 'card', 'aria-labelledby': 'test-title' },
    h('h2', { id: 'test-title' }, 'Test delivery'),
    h('dl', { class: 'summary' },
      h('dt', {}, 'Result'), h('dd', {}, h('span', { class: `status status-${outcome}` }, outcome)),
      h('dt', {}, 'Status code'), h('dd', {}, r.status_code ?? 'none'),
      h('dt', {}, 'Duration'), h('dd', {}, `${r.duration_ms} ms`),
      r.error && [h('dt', {}, 'Error'), h('dd', { class: 'error-text' }, r.error)],
      h('dt', {}, 'Response'), h('dd', {}, h('pre', { class: 'response' }, r.response || '(empty)'))),
    h('p', {}, link('View the delivery', 'deliveries', r.delivery_id)));
}

export async function detail(view, { id }) {
  const heading = h('h1', { tabindex: '-1' }, 'Webhook');
  view.append(h('p', { class: 'breadcrumb' }, h('a', { href: '#/webhooks' }, 'Webhooks')), heading);
  const body = h('div', {}, loading('the webhook'));
  view.append(body);
  let w;
  try {
    w = await get(path('webhooks', id));
  } catch (err) {
    if (err.status === 404) replace(body, h('p', { class: 'empty' }, 'There is no webhook with this id (it may have been deleted).'));
    else {
      showProblem(err);
      replace(body, h('p', { class: 'empty' }, 'The webhook could not be loaded.'));
    }
    return;
  }

  const manage = may('manage');
  const status = note('', { id: 'action-status' });
  const testSlot = h('div', { id: 'test-result', 'aria-live': 'polite' });
  const secretSlot = h('div', {});
  const keySlot = h('div', {});
  const summarySlot = h('div', {});
  const formSlot = h('div', {});
  const toggle = h('button', { type: 'button', id: 'toggle-active', class: 'button-secondary' });
  const rotateKey = h('button', { type: 'button', id: 'rotate-signing-key', class: 'button-secondary' }, 'Rotate signing key');

  // Shows `w`'s fields after a change.
  const showSummary = (next) => {
    w = next;
    replace(heading, w.name);
    replace(summarySlot, summary(w));
    replace(toggle, w.is_active ? 'Disable' : 'Enable');
    rotateKey.hidden = !w.signing?.ed25519; // a key pair only with ed25519 on
  };
  // ... and the edit form, filled anew.
  const show = (next) => {
    showSummary(next);
    if (!manage) return;
    replace(formSlot, webhookForm({
      webhook: w,
      onSaved(saved) {
        show(saved);
        status.textContent = 'Saved.';
      },
    }));
  };

  // Runs an action with its button disabled; errors go to the banner.
  const act = (button, work) => async () => {
    clearError();
    status.textContent = '';
    button.disabled = true;
    try {
      await work();
    } catch (err) {
      showProblem(err);
    } finally {
      button.disabled = false;
    }
  };

  const sendTest = h('button', { type: 'button', id: 'send-test' }, 'Send test event');
  sendTest.addEventListener('click', act(sendTest, async () => {
    replace(testSlot, note('Sending a test event…'));
    try {
      const result = await post(path('webhooks', w.id, 'test'));
      replace(testSlot, testResult(result));
    } catch (err) {
      replace(testSlot);
      throw err;
    }
    showSummary(await get(path('webhooks', w.id))); // counts and last delivery
  }));

  const rotate = h('button', { type: 'button', id: 'rotate-secret', class: 'button-secondary' }, 'Rotate secret');
  rotate.addEventListener('click', act(rotate, async () => {
    const sure = window.confirm('Rotate the signing secret? The new one is shown once; the current one keeps signing beside it for a while.');
    if (!sure) return;
    const answer = await post(path('webhooks', w.id, 'rotate-secret'));
    replace(secretSlot, secretPanel('New signing secret', answer.secret,
      'This secret will not be shown again: copy it now. The previous secret keeps signing beside it until ',
      timeAbsolute(answer.previous_secret_expires_at), '.'));
    secretSlot.querySelector('#secret-title').focus();
  }));

  rotateKey.addEventListener('click', act(rotateKey, async () => {
    const sure = window.confirm('Rotate the ed25519 signing key? Receivers need the new public key; the current key keeps signing beside it for a while.');
    if (!sure) return;
    const answer = await post(path('webhooks', w.id, 'rotate-signing-key'));
    replace(keySlot, keyPanel(answer));
    keySlot.querySelector('#signing-key-title').focus();
    showSummary(await get(path('webhooks', w.id))); // the keys in the settings
  }));

  toggle.addEventListener('click', act(toggle, async () => {
    const updated = await patch(path('webhooks', w.id), { is_active: !w.is_active });
    show(updated);
    status.textContent = updated.is_active ? 'Webhook enabled.' : 'Webhook disabled.';
  }));

  const remove = h('button', { type: 'button', id: 'delete-webhook', class: 'button-danger' }, 'Delete');
  remove.addEventListener('click', act(remove, async () => {
    const sure = window.confirm(`Delete the webhook “${w.name}” and all its deliveries? This cannot be undone.`);
    if (!sure) return;
    await del(path('webhooks', w.id));
    location.hash = '#/webhooks';
  }));

  formSlot.addEventListener('submit', () => { status.textContent = ''; });
  replace(body,
    h('div', { class: 'actions toolbar' },
      may('write') && sendTest, manage && [rotate, rotateKey, toggle, remove],
      h('a', { href: hashWithQuery('deliveries', { webhook_id: w.id }), id: 'webhook-deliveries', class: 'button button-secondary' }, 'Deliveries')),
    status, testSlot, secretSlot, keySlot,
    statsSection(w.id),
    h('h2', {}, 'Settings'),
    summarySlot,
    manage && h('section', { 'aria-labelledby': 'edit-title' }, h('h2', { id: 'edit-title' }, 'Edit'), formSlot));
  show(w);
}
