// The body preview in the webhook form: POST /v1/webhooks/preview renders
// the chosen format (or custom template) on a sample event, as a delivery
// would, without saving. The body is shown as text, JSON re-indented.

import { post } from '../api.js';
import { h, note, field, indentJson, clearFieldErrors, showFieldErrors, showProblem } from '../dom.js';

const DEFAULT_EVENT_TYPE = 'order.created';

// The inputs a preview's field errors can name.
const PREVIEW_INPUTS = { format: 'format', template: 'template', content_type: 'content_type', event_type: 'preview-event-type' };

// As the API tells JSON: application/json and the application/…+json types.
export function isJsonType(contentType) {
  const essence = String(contentType).split(';')[0].trim().toLowerCase();
  return essence === 'application/json' || (essence.startsWith('application/') && essence.endsWith('+json'));
}

// The body as shown: re-indented when it is JSON and parses (indentJson
// keeps numbers as sent), else as it is.
export function shownBody(body, contentType) {
  if (!isJsonType(contentType)) return body;
  try {
    JSON.parse(body);
  } catch {
    return body;
  }
  return indentJson(body);
}

// The preview fieldset, for a form with the `format` select. `values()`
// answers {format, template, content_type} as the form holds them now.
export function previewSection(format, values) {
  const eventType = h('input', {
    id: 'preview-event-type', name: 'event_type', type: 'text', value: DEFAULT_EVENT_TYPE,
    spellcheck: 'false', autocomplete: 'off',
  });
  const button = h('button', { type: 'button', id: 'preview-template', class: 'button-secondary' }, 'Preview the body');
  const status = note('', { id: 'template-preview-status' });
  const contentType = h('code', { id: 'template-preview-content-type' });
  const pre = h('pre', { id: 'template-preview', tabindex: '0', 'aria-labelledby': 'template-preview-label' });
  const result = h('div', { id: 'template-preview-result', hidden: true },
    h('p', { id: 'template-preview-label' }, 'The body, sent as ', contentType, ':'),
    pre);

  // A preview of other values than the form's now is stale: hidden.
  const forget = () => {
    result.hidden = true;
    status.textContent = '';
  };
  format.addEventListener('change', forget);
  // Enter in the event type previews rather than saving the webhook.
  eventType.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter' || event.isComposing) return;
    event.preventDefault();
    button.click();
  });

  button.addEventListener('click', async () => {
    const { form } = button;
    clearFieldErrors(form, Object.values(PREVIEW_INPUTS));
    forget();
    const v = values();
    const body = { format: v.format };
    if (v.format === 'custom') {
      body.template = v.template;
      body.content_type = v.content_type;
    }
    const type = eventType.value.trim();
    if (type) body.event_type = type;
    button.disabled = true;
    status.textContent = 'Rendering…';
    try {
      const answer = await post('/v1/webhooks/preview', body);
      contentType.textContent = answer.content_type;
      pre.textContent = shownBody(answer.body, answer.content_type);
      result.hidden = false;
      status.textContent = `Rendered for a sample ${type || DEFAULT_EVENT_TYPE} event; nothing was saved or sent.`;
    } catch (err) {
      if (err.status !== 422 || !err.fieldErrors.length) {
        status.textContent = '';
        showProblem(err);
        return;
      }
      const unmatched = showFieldErrors(form, err.fieldErrors, (f) => PREVIEW_INPUTS[f] || null);
      status.textContent = unmatched.length
        ? `The preview failed: ${unmatched.map((e) => `${e.field} ${e.detail}`).join('; ')}`
        : 'The preview failed — see the marked field.';
    } finally {
      button.disabled = false;
    }
  });

  return h('fieldset', { id: 'preview-fields', class: 'subfields' },
    h('legend', {}, 'Preview'),
    field('preview-event-type', 'Sample event type', eventType,
      'The body is rendered for a sample event of this type, as a delivery would carry it.'),
    h('div', { class: 'actions' }, button),
    status,
    result);
}
