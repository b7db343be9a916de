// The webhook form, for create (POST) and edit (PATCH of the fields that
// changed). Submitted with fetch: the CSP (form-action 'none') forbids a
// native form post, and the form has `novalidate` so the API's checks speak.

import { post, patch, path } from '../api.js';
import {
  h, note, field, checkField, clearError, showError, showProblem, clearFieldErrors, showFieldErrors,
} from '../dom.js';
import { authSection, authInputFor } from './webhook-auth.js';
import { previewSection } from './webhook-preview.js';

const FORMATS = [
  ['json', 'JSON (the Herald envelope)'],
  ['splunk_hec', 'Splunk HTTP Event Collector'],
  ['datadog', 'Datadog event'],
  ['elastic', 'Elastic (ECS)'],
  ['vaultls', 'VaulTLS envelope'],
  ['securebase', 'SecureBase envelope'],
  ['vaulytica', 'Vaulytica envelope'],
  ['webnet', 'webnet envelope'],
  ['custom', 'Custom template'],
];

// Standard Webhooks' retry schedule, the API's default.
const STANDARD_SCHEDULE = '5s, 5m, 30m, 2h, 5h, 10h, 10h';

// The signature schemes (the API's `signing`) and what it has by default.
const SCHEMES = ['standard', 'simple', 'ed25519'];
const SIGNING_DEFAULTS = { standard: true, simple: true, ed25519: false, simple_header: null };

// Inputs named like the API's fields; errors on other fields go to the banner.
const INPUTS = [
  'name', 'url', 'event_types', 'description', 'timeout_seconds', 'retry_attempts',
  'retry_schedule', 'rate_limit', 'is_active', 'verify_ssl', 'format', 'template',
  'content_type', 'headers',
];

function inputFor(field) {
  if (INPUTS.includes(field)) return field;
  if (field.startsWith('event_types[')) return 'event_types';
  if (field.startsWith('retry_schedule[')) return 'retry_schedule';
  if (field.startsWith('headers.')) return 'headers';
  if (field === 'signing') return 'signing-schemes';
  if (field.startsWith('signing.')) return `signing-${field.slice('signing.'.length)}`;
  if (field === 'auth' || field.startsWith('auth.')) return authInputFor(field);
  return null;
}

const numberInput = (id, value, min, max) =>
  h('input', { id, name: id, type: 'number', inputmode: 'numeric', min, max, step: 1, value: value ?? '' });

const headersText = (headers) =>
  Object.entries(headers || {}).map(([name, value]) => `${name}: ${value}`).join('\n');

// `Name: value` lines -> {headers} or {error}.
function parseHeaders(text) {
  const headers = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i].trim();
    if (!line) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) return { error: `line ${i + 1} is not “Name: value”` };
    const name = line.slice(0, colon).trim();
    if (Object.hasOwn(headers, name)) return { error: `line ${i + 1} repeats the header ${name}` };
    headers[name] = line.slice(colon + 1).trim();
  }
  return { headers };
}

// Reads the form: `{values, problems}`; numbers left empty are null.
// `auth()`: the outbound authentication to send (webhook-auth.js).
function read(form, editing, auth) {
  const value = (name) => form.elements.namedItem(name)?.value ?? '';
  const problems = [];
  const values = {
    name: value('name').trim(),
    url: value('url').trim(),
    event_types: value('event_types').split(',').map((s) => s.trim()).filter(Boolean),
    description: value('description'),
    format: value('format'),
  };
  values.retry_schedule = value('retry_schedule').split(',').map((s) => s.trim()).filter(Boolean);
  for (const name of ['timeout_seconds', 'retry_attempts', 'rate_limit']) {
    const text = value(name).trim();
    if (text === '') {
      values[name] = null;
      if (editing && name === 'timeout_seconds') problems.push({ field: name, detail: 'is required' });
    } else if (/^-?\d+$/.test(text)) {
      values[name] = Number(text);
    } else {
      problems.push({ field: name, detail: 'must be a whole number' });
    }
  }
  if (values.format === 'custom') {
    values.template = value('template');
    values.content_type = value('content_type').trim() || 'application/json';
  }
  const parsed = parseHeaders(value('headers'));
  if (parsed.error) problems.push({ field: 'headers', detail: parsed.error });
  values.headers = parsed.headers || {};
  const checked = (name) => Boolean(form.elements.namedItem(name)?.checked);
  if (editing) values.is_active = checked('is_active');
  values.verify_ssl = checked('verify_ssl');
  values.signing = Object.fromEntries(SCHEMES.map((k) => [k, checked(`signing-${k}`)]));
  values.signing.simple_header = value('signing.simple_header').trim() || null;
  const outbound = auth();
  values.auth = outbound.auth;
  problems.push(...outbound.problems);
  return { values, problems };
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const sortedEntries = (o) => Object.entries(o || {}).sort(([a], [b]) => a.localeCompare(b));

// The body for create: what the form shows; blank numbers left to the API.
function createBody(v) {
  const body = { name: v.name, url: v.url, event_types: v.event_types, format: v.format };
  if (v.description) body.description = v.description;
  for (const name of ['timeout_seconds', 'retry_attempts', 'rate_limit']) {
    if (v[name] !== null) body[name] = v[name];
  }
  if (v.retry_schedule.length) body.retry_schedule = v.retry_schedule;
  if (v.format === 'custom') {
    body.template = v.template;
    body.content_type = v.content_type;
  }
  if (Object.keys(v.headers).length) body.headers = v.headers;
  body.verify_ssl = v.verify_ssl;
  body.signing = Object.fromEntries(SCHEMES.map((k) => [k, v.signing[k]]));
  if (v.signing.simple_header) body.signing.simple_header = v.signing.simple_header;
  if (v.auth) body.auth = v.auth;
  return body;
}

// The schemes that differ from the webhook's (`simple_header` null: back
// to the server's header); null when none does.
function signingPatch(s, current) {
  const was = { ...SIGNING_DEFAULTS, ...current };
  const changed = {};
  for (const k of SCHEMES) if (s[k] !== Boolean(was[k])) changed[k] = s[k];
  if (s.simple_header !== (was.simple_header ?? null)) changed.simple_header = s.simple_header;
  return Object.keys(changed).length ? changed : null;
}

// The body for PATCH: only the fields that differ from `w`.
function patchBody(v, w) {
  const body = {};
  for (const name of ['name', 'url', 'description', 'timeout_seconds', 'is_active', 'verify_ssl', 'format']) {
    if (v[name] !== w[name]) body[name] = v[name];
  }
  // Blank: as many retries as the schedule has delays.
  if (v.retry_attempts !== null && v.retry_attempts !== w.retry_attempts) body.retry_attempts = v.retry_attempts;
  // A schedule left blank keeps the webhook's exponential backoff.
  if (v.retry_schedule.length && !same(v.retry_schedule, w.retry_schedule || [])) {
    body.retry_schedule = v.retry_schedule;
  }
  if (!same(v.event_types, w.event_types)) body.event_types = v.event_types;
  if (v.rate_limit !== (w.rate_limit ?? null)) body.rate_limit = v.rate_limit; // null: no limit
  if (v.format === 'custom') {
    const switching = w.format !== 'custom';
    if (switching || v.template !== (w.template ?? '')) body.template = v.template;
    if (switching || v.content_type !== w.content_type) body.content_type = v.content_type;
  }
  if (!same(sortedEntries(v.headers), sortedEntries(w.headers))) body.headers = v.headers;
  const signing = signingPatch(v.signing, w.signing);
  if (signing) body.signing = signing;
  if (v.auth !== undefined) body.auth = v.auth; // null: removed
  return body;
}

// The signature schemes; `s`: the webhook's `signing` (create: defaults).
function signingFields(s) {
  return h('fieldset', { id: 'signing-fields', class: 'subfields' },
    h('legend', {}, 'Signing'),
    h('fieldset', { id: 'signing-schemes', name: 'signing', class: 'check-group', tabindex: '-1' },
      h('legend', {}, 'Schemes (at least one)'),
      checkField('signing-standard', 'Standard Webhooks v1: HMAC-SHA256 with the secret, in webhook-signature', s.standard),
      checkField('signing-simple', 'Simple: sha256=<hex> HMAC with the secret, in a header of its own', s.simple),
      checkField('signing-ed25519', 'Standard Webhooks v1a: ed25519, in webhook-signature', s.ed25519,
        'A key pair is made the first time it is switched on; receivers verify with its public key, shown on the webhook’s page.')),
    field('signing-simple_header', 'Simple scheme header',
      h('input', {
        id: 'signing-simple_header', name: 'signing.simple_header', type: 'text', value: s.simple_header ?? '',
        spellcheck: 'false', autocomplete: 'off',
      }),
      'Blank: the server’s default header (worker.signature_header, X-Webhook-Signature unless configured).'));
}

// Shows a failed save: field errors by their inputs, the rest in the banner.
function showSaveError(form, err) {
  showProblem(err);
  if (err.status === 409) {
    showFieldErrors(form, [{ field: 'name', detail: err.message }], inputFor);
    return;
  }
  const unmatched = showFieldErrors(form, err.fieldErrors, inputFor);
  if (unmatched.length) {
    showError(`${err.message}: ${unmatched.map((e) => `${e.field} ${e.detail}`).join('; ')}`);
  } else if (err.fieldErrors.length) {
    showError(`${err.message} — see the marked fields.`);
  }
}

// The form. `webhook`: the one to edit (null: create). `onSaved(webhook)`
// is called with the API's answer.
export function webhookForm({ webhook = null, onSaved }) {
  const w = webhook || {};
  const editing = Boolean(webhook);
  const format = h('select', { id: 'format', name: 'format' },
    FORMATS.map(([value, label]) => h('option', { value, selected: (w.format || 'json') === value }, label)));
  const custom = h('fieldset', { id: 'custom-fields', class: 'subfields' },
    h('legend', {}, 'Custom body'),
    field('template', 'Template', h('textarea', { id: 'template', name: 'template', rows: 6, spellcheck: 'false', value: w.template ?? '' }),
      'A minijinja template over id, type, timestamp, tenant_id, webhook_id, severity, source and data.'),
    field('content_type', 'Content type', h('input', { id: 'content_type', name: 'content_type', type: 'text', value: w.content_type || 'application/json' })));
  format.value = w.format || 'json';
  const showCustom = () => { custom.hidden = format.value !== 'custom'; };
  format.addEventListener('change', showCustom);
  showCustom();
  const auth = authSection(w.auth?.type ?? null, editing);
  // The body as the form holds it now, for the preview.
  const bodyValues = () => ({
    format: format.value,
    template: custom.querySelector('#template').value,
    content_type: custom.querySelector('#content_type').value.trim() || 'application/json',
  });

  const status = note('');
  const save = h('button', { type: 'submit', id: 'save-webhook' }, editing ? 'Save changes' : 'Create webhook');
  const form = h('form', { id: 'webhook-form', class: 'form', novalidate: true },
    field('name', 'Name', h('input', { id: 'name', name: 'name', type: 'text', value: w.name ?? '', required: true, autocomplete: 'off' })),
    field('url', 'URL', h('input', { id: 'url', name: 'url', type: 'url', value: w.url ?? '', required: true, autocomplete: 'off', spellcheck: 'false' }),
      'Where deliveries are sent (https, unless the server allows http).'),
    field('event_types', 'Event types', h('input', { id: 'event_types', name: 'event_types', type: 'text', value: (w.event_types || ['*']).join(', '), spellcheck: 'false' }),
      'Comma-separated: exact types, invoice.* for every type under invoice., or * for all.'),
    field('description', 'Description', h('textarea', { id: 'description', name: 'description', rows: 2, value: w.description ?? '' })),
    h('div', { class: 'field-row' },
      field('timeout_seconds', 'Timeout (seconds)', numberInput('timeout_seconds', editing ? w.timeout_seconds : 10, 1, 300)),
      field('retry_attempts', 'Retry attempts', numberInput('retry_attempts', editing ? w.retry_attempts : null, 0, 10),
        'Empty: one per delay of the schedule.'),
      field('rate_limit', 'Rate limit (per second)', numberInput('rate_limit', w.rate_limit, 1, 10000), 'Empty: no limit.')),
    field('retry_schedule', 'Retry schedule', h('input', {
      id: 'retry_schedule', name: 'retry_schedule', type: 'text', spellcheck: 'false', autocomplete: 'off',
      value: editing ? (w.retry_schedule || []).join(', ') : STANDARD_SCHEDULE,
    }), editing && !w.retry_schedule
      ? `Exponential backoff from ${w.retry_backoff_seconds} s (×${w.exponential_base}); enter delays to use a schedule instead.`
      : 'The delay before each retry, comma-separated (30s, 5m, 2h); past its end the last one repeats.'),
    editing && checkField('is_active', 'Active (receives deliveries)', w.is_active),
    checkField('verify_ssl', 'Verify the endpoint’s TLS certificate', editing ? w.verify_ssl : true,
      'Turning it off may be refused: the server must allow it (security.allow_insecure_tls).'),
    field('format', 'Body format', format),
    custom,
    previewSection(format, bodyValues),
    signingFields({ ...SIGNING_DEFAULTS, ...w.signing }),
    auth.element,
    field('headers', 'Headers', h('textarea', { id: 'headers', name: 'headers', rows: 3, spellcheck: 'false', value: headersText(w.headers) }),
      'One “Name: value” per line, sent with every delivery. Stored values show masked (****); leave them as they are to keep them.'),
    h('div', { class: 'actions' }, save),
    status);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearError();
    clearFieldErrors(form);
    status.textContent = '';
    const { values, problems } = read(form, editing, auth.read);
    if (problems.length) {
      showFieldErrors(form, problems, inputFor);
      showError('Some fields need attention — see the marked fields.');
      return;
    }
    const body = editing ? patchBody(values, webhook) : createBody(values);
    if (editing && Object.keys(body).length === 0) {
      status.textContent = 'Nothing changed.';
      return;
    }
    save.disabled = true;
    status.textContent = 'Saving…';
    try {
      const saved = editing
        ? await patch(path('webhooks', webhook.id), body)
        : await post('/v1/webhooks', body);
      status.textContent = 'Saved.';
      onSaved(saved);
    } catch (err) {
      status.textContent = '';
      showSaveError(form, err);
    } finally {
      save.disabled = false;
    }
  });
  return form;
}
