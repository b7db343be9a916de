// Small DOM helpers. Everything here writes text with textContent or text
// nodes: whatever a receiver or producer controls is never parsed as HTML.

// Properties set directly rather than as attributes.
const PROPS = new Set(['value', 'checked', 'disabled', 'hidden', 'selected', 'required', 'multiple']);

// Builds an element. attrs: `class`, `for`, `dataset: {}`, `on: {event: fn}`,
// the properties above, and any other attribute (names come from this code,
// never from data). `href` must be an in-app link (`#/…` or `/…`).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name === 'for') el.htmlFor = value;
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name === 'on') {
      for (const [event, handler] of Object.entries(value)) el.addEventListener(event, handler);
    } else if (name === 'href') el.setAttribute('href', safeHref(value));
    else if (PROPS.has(name)) el[name] = value;
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

// Appends children: nodes as they are, strings and numbers as text nodes,
// arrays flattened, null/undefined/false skipped.
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// Replaces an element's content.
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// Only links inside the console: never a scheme such as javascript:.
function safeHref(value) {
  const href = String(value);
  return href.startsWith('#') || (href.startsWith('/') && !href.startsWith('//')) ? href : '#';
}

// `#/path/<id>` with each id encoded.
export function link(text, ...segments) {
  return h('a', { href: hashPath(...segments) }, text);
}

export function hashPath(...segments) {
  const [first, ...rest] = segments;
  return `#/${first}${rest.map((s) => `/${encodeURIComponent(s)}`).join('')}`;
}

// A hash with a query: `#/deliveries?webhook_id=…`; empty values dropped.
export function hashWithQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const qs = q.toString();
  return `#/${path}${qs ? `?${qs}` : ''}`;
}

// ---- Banner and status messages ----

const banner = () => document.getElementById('error');

export function showError(message) {
  const el = banner();
  replace(el, message);
  el.hidden = false;
}

export function clearError() {
  const el = banner();
  el.replaceChildren();
  el.hidden = true;
}

// A polite live region for "Saved." and the like.
export function note(text, attrs = {}) {
  return h('p', { class: 'note', role: 'status', ...attrs }, text);
}

export function loading(what) {
  return h('p', { class: 'loading', role: 'status' }, `Loading ${what}…`);
}

// ---- Form fields ----

// A labelled control with optional help text (`help`: text, or nodes).
export function field(id, label, control, help) {
  if (help) control.setAttribute('aria-describedby', `${id}-help`);
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    control,
    help && h('p', { class: 'help', id: `${id}-help` }, help));
}

// A checkbox with its label on the right and optional help text below.
export function checkField(id, label, checked, help) {
  const box = h('input', { id, name: id, type: 'checkbox', checked: Boolean(checked) });
  if (help) box.setAttribute('aria-describedby', `${id}-help`);
  return h('div', { class: 'field field-check' },
    box,
    h('label', { for: id }, label),
    help && h('p', { class: 'help', id: `${id}-help` }, help));
}

// ---- Field errors (422) ----

// Removes the field errors a previous submission left in `form`, or only
// those of the inputs whose ids are in `ids`. Each input keeps its own
// aria-describedby (its help text); only the errors' ids leave it.
export function clearFieldErrors(form, ids = null) {
  for (const div of form.querySelectorAll('.field-error')) {
    const id = div.dataset.input;
    if (ids && !ids.includes(id)) continue;
    div.remove();
    const input = id ? form.querySelector(`#${CSS.escape(id)}`) : null;
    if (!input) continue;
    input.removeAttribute('aria-invalid');
    const rest = (input.getAttribute('aria-describedby') || '').split(/\s+/).filter((t) => t && t !== div.id);
    if (rest.length) input.setAttribute('aria-describedby', rest.join(' '));
    else input.removeAttribute('aria-describedby');
  }
  if (!ids) for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
}

// Puts each `{field, detail}` right after the input `inputFor(field)` names
// (an element id in `form`); answers those no input took.
export function showFieldErrors(form, errors, inputFor) {
  const unmatched = [];
  let first = null;
  errors.forEach((err, i) => {
    const id = inputFor(err.field);
    const input = id ? form.querySelector(`#${CSS.escape(id)}`) : null;
    if (!input) {
      unmatched.push(err);
      return;
    }
    const errorId = `${id}-error-${i}`;
    const text = err.field === input.name ? err.detail : `${err.field}: ${err.detail}`;
    const div = h('div', { class: 'field-error', id: errorId, dataset: { field: err.field, input: id } }, text);
    // After the input and after any error already placed for it.
    let anchor = input;
    while (anchor.nextElementSibling?.classList.contains('field-error')) anchor = anchor.nextElementSibling;
    anchor.after(div);
    input.setAttribute('aria-invalid', 'true');
    const described = input.getAttribute('aria-describedby');
    input.setAttribute('aria-describedby', described ? `${described} ${errorId}` : errorId);
    first ??= input;
  });
  first?.focus();
  return unmatched;
}

// ---- Time ----

// "3 min ago" / "in 2 h", with the ISO time in `title`.
export function timeAgo(iso, empty = '—') {
  if (!iso) return document.createTextNode(empty);
  const date = new Date(iso);
  return h('time', { datetime: iso, title: date.toISOString() }, relative(date));
}

// The local date and time, with the ISO time in `title`.
export function timeAbsolute(iso, empty = '—') {
  if (!iso) return document.createTextNode(empty);
  const date = new Date(iso);
  return h('time', { datetime: iso, title: date.toISOString() },
    `${date.toLocaleString()} (${relative(date)})`);
}

export function relative(date, now = Date.now()) {
  const seconds = Math.round((date.getTime() - now) / 1000);
  const abs = Math.abs(seconds);
  const say = (n, unit) => (seconds < 0 ? `${n} ${unit} ago` : `in ${n} ${unit}`);
  // A few seconds either way (or clocks slightly apart): "just now".
  if (abs < 45) return seconds > 5 ? 'in a few seconds' : 'just now';
  if (abs < 3600) return say(Math.max(1, Math.round(abs / 60)), 'min');
  if (abs < 86400) return say(Math.round(abs / 3600), 'h');
  if (abs < 86400 * 45) {
    const days = Math.round(abs / 86400);
    return say(days, days === 1 ? 'day' : 'days');
  }
  return date.toLocaleDateString();
}

// datetime-local value ("2024-05-01T13:45", local time) <-> RFC 3339 UTC.
export function localToIso(value) {
  if (!value) return '';
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? '' : date.toISOString();
}

export function isoToLocal(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

// ---- JSON ----

// A <pre> with `value` as indented JSON (textContent).
export function jsonPre(value, attrs = {}) {
  const pre = h('pre', { class: 'json', ...attrs });
  pre.textContent = JSON.stringify(value, null, 2);
  return pre;
}

// A <pre> with raw JSON text re-indented without parsing it into numbers,
// so large integers and exact decimals show as they were sent.
export function rawJsonPre(text, attrs = {}) {
  const pre = h('pre', { class: 'json', ...attrs });
  pre.textContent = indentJson(text);
  return pre;
}

// Re-indents JSON text token by token (strings copied as they are).
export function indentJson(text) {
  let out = '';
  let depth = 0;
  const newline = () => `\n${'  '.repeat(depth)}`;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (c === '"') {
      const end = stringEnd(text, i);
      out += text.slice(i, end);
      i = end - 1;
    } else if (c === '{' || c === '[') {
      let next = i + 1;
      while (next < text.length && /\s/.test(text[next])) next += 1;
      if (text[next] === (c === '{' ? '}' : ']')) {
        out += c + text[next]; // empty: {} or []
        i = next;
      } else {
        depth += 1;
        out += c + newline();
      }
    } else if (c === '}' || c === ']') {
      depth -= 1;
      out += newline() + c;
    } else if (c === ',') out += `,${newline()}`;
    else if (c === ':') out += ': ';
    else if (!/\s/.test(c)) out += c;
  }
  return out;
}

// The index just past the JSON string starting at `start`.
function stringEnd(text, start) {
  let i = start + 1;
  while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
  return i + 1;
}

// The raw text of member `key` of the JSON object `text` (top level), or
// null. Scans without converting values.
export function rawMember(text, key) {
  let i = text.indexOf('{') + 1;
  const skipWs = () => { while (/\s/.test(text[i] ?? '')) i += 1; };
  while (i > 0 && i < text.length) {
    skipWs();
    if (text[i] !== '"') return null;
    const keyEnd = stringEnd(text, i);
    const name = JSON.parse(text.slice(i, keyEnd));
    i = keyEnd;
    skipWs();
    i += 1; // ':'
    skipWs();
    const start = i;
    let depth = 0;
    while (i < text.length) {
      const c = text[i];
      if (c === '"') { i = stringEnd(text, i); continue; }
      if (c === '{' || c === '[') depth += 1;
      else if (c === '}' || c === ']') {
        if (depth === 0) break;
        depth -= 1;
      } else if (c === ',' && depth === 0) break;
      i += 1;
    }
    if (name === key) return text.slice(start, i).trim();
    i += 1; // ',' or '}'
  }
  return null;
}

// ---- Errors and navigation ----

// Shows an error in the banner; a 401 is left to the sign-out it causes.
export function showProblem(err) {
  if (err?.status === 401) return;
  showError(err?.message || String(err));
}

// Goes to `hash`, rendering again when it is already the current one.
export function navigate(hash) {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else location.hash = hash;
}
