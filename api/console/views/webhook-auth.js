// Outbound authentication in the webhook form: a select of the kinds the
// API knows (OutboundAuth's `type`) and each kind's inputs, shown only for
// the chosen one. The API never answers credentials back, only the kind:
// on edit the inputs start blank and `auth` is sent only when the kind
// changed or something was typed (then whole, as the API replaces it).

import { h } from '../dom.js';

const NONE = 'none';
const STORED_NOTE = 'stored; leave blank to keep';

export const AUTH_TYPES = [
  [NONE, 'None'],
  ['api_key', 'API key (in a header)'],
  ['bearer', 'Bearer token'],
  ['basic', 'Basic (username and password)'],
  ['oauth2', 'OAuth2 client credentials'],
];

const CLIENT_AUTH = [
  ['client_secret_basic', 'HTTP basic auth (client_secret_basic)'],
  ['client_secret_post', 'In the form body (client_secret_post)'],
];

// Each kind's fields, named as the API names them. `secret`: a password
// input, sent as typed; `optional`: left out when blank (the API's
// default); `choices`: a select.
const FIELDS = {
  api_key: [
    { name: 'header', label: 'Header', optional: true, placeholder: 'X-API-Key', help: 'Blank: X-API-Key.' },
    { name: 'key', label: 'Key', secret: true },
  ],
  bearer: [
    { name: 'token', label: 'Token', secret: true, help: 'Sent as “Authorization: Bearer <token>”.' },
  ],
  basic: [
    { name: 'username', label: 'Username', help: 'May not contain “:”.' },
    { name: 'password', label: 'Password', secret: true },
  ],
  oauth2: [
    { name: 'token_url', label: 'Token URL', type: 'url', help: 'Herald fetches a token here (client credentials grant) and sends it as a bearer token.' },
    { name: 'client_id', label: 'Client ID' },
    { name: 'client_secret', label: 'Client secret', secret: true },
    { name: 'scope', label: 'Scope (optional)', optional: true },
    { name: 'audience', label: 'Audience (optional)', optional: true },
    { name: 'client_auth', label: 'Client authentication', choices: CLIENT_AUTH },
  ],
};

const inputId = (name) => `auth-${name}`;

// The input for an `auth…` field error (`auth`, `auth.type`, `auth.key`…).
export function authInputFor(field) {
  if (field === 'auth' || field === 'auth.type') return 'auth-type';
  if (!field.startsWith('auth.')) return null;
  const name = field.slice('auth.'.length);
  return Object.values(FIELDS).some((fields) => fields.some((f) => f.name === name)) ? inputId(name) : null;
}

// One field's input, its label and help; `stored`: the kind is the
// stored one, whose values are kept when left blank.
function authField(f, stored) {
  const id = inputId(f.name);
  const attrs = { id, name: `auth.${f.name}`, dataset: { initial: '' } };
  let control;
  if (f.choices) {
    // The stored choice is not known either: none is claimed.
    const choices = stored ? [['', '(as stored; not shown)'], ...f.choices] : f.choices;
    control = h('select', attrs, choices.map(([value, label], i) => h('option', { value, selected: i === 0 }, label)));
    control.dataset.initial = choices[0][0];
  } else {
    control = h('input', {
      ...attrs,
      type: f.secret ? 'password' : f.type || 'text',
      // new-password: no browser fills in a saved password here.
      autocomplete: f.secret ? 'new-password' : 'off',
      spellcheck: 'false',
      placeholder: stored ? STORED_NOTE : f.placeholder,
    });
  }
  const described = [f.help && `${id}-help`, stored && 'auth-stored-note'].filter(Boolean);
  if (described.length) control.setAttribute('aria-describedby', described.join(' '));
  return h('div', { class: 'field' },
    h('label', { for: id }, f.label),
    control,
    f.help && h('p', { class: 'help', id: `${id}-help` }, f.help));
}

// The fieldset. `storedType`: the kind the webhook has (null: none or
// creating). Answers `{element, read()}`; `read()` answers `{auth,
// problems}`, `auth` being what to send: an object, null (remove it), or
// undefined (leave it out).
export function authSection(storedType, editing) {
  const initial = storedType || NONE;
  const select = h('select', { id: 'auth-type', name: 'auth.type', 'aria-describedby': 'auth-type-help' },
    AUTH_TYPES.map(([value, label]) => h('option', { value, selected: value === initial }, label)));
  select.value = initial;
  const groups = Object.entries(FIELDS).map(([type, fields]) =>
    h('div', { id: `auth-fields-${type}`, class: 'auth-fields', dataset: { type } },
      fields.map((f) => authField(f, editing && type === storedType))));
  const storedNote = h('p', { id: 'auth-stored-note', class: 'help' },
    `Credentials are never shown again: ${STORED_NOTE}. To change any of them, enter them all.`);
  const showChosen = () => {
    for (const g of groups) g.hidden = g.dataset.type !== select.value;
    storedNote.hidden = !(editing && storedType && select.value === storedType);
  };
  select.addEventListener('change', showChosen);
  showChosen();

  const element = h('fieldset', { id: 'auth-fields', class: 'subfields' },
    h('legend', {}, 'Outbound authentication'),
    h('div', { class: 'field' },
      h('label', { for: 'auth-type' }, 'Authentication'),
      select,
      h('p', { class: 'help', id: 'auth-type-help' },
        'What each delivery carries so that the receiver lets it in. Credentials are sealed at rest and never shown again.')),
    storedNote,
    groups);

  function read() {
    const type = select.value;
    if (type === NONE) return { auth: storedType ? null : undefined, problems: [] };
    const inputs = FIELDS[type].map((f) => [f, element.querySelector(`#${inputId(f.name)}`)]);
    const typed = inputs.some(([, el]) => el.value !== el.dataset.initial);
    if (editing && type === storedType && !typed) return { auth: undefined, problems: [] }; // kept
    const auth = { type };
    const problems = [];
    for (const [f, el] of inputs) {
      const value = f.secret ? el.value : el.value.trim();
      if (f.choices && value === '') problems.push({ field: `auth.${f.name}`, detail: 'choose one: the stored choice is not shown' });
      else if (!(f.optional && value === '')) auth[f.name] = value;
    }
    return { auth, problems };
  }
  return { element, read };
}
