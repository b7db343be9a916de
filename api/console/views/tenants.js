// Tenants (admin token): the list, creating one (its first token shown
// once), deleting one (its data removed in the background), and each
// tenant's API tokens.

import { get, post, del, url, path } from '../api.js';
import {
  h, replace, hashWithQuery, loading, note, clearError, showProblem, clearFieldErrors, showFieldErrors,
  timeAgo,
} from '../dom.js';
import { tableWrap } from './webhooks.js';

const PER_PAGE = 50;

// A token shown once, with the warning that goes with it.
function tokenShownOnce(id, title, token) {
  return h('section', { class: 'card secret-card', 'aria-labelledby': `${id}-title` },
    h('h2', { id: `${id}-title`, tabindex: '-1' }, title),
    h('p', { class: 'secret-line' }, h('code', { id, class: 'secret' }, token)),
    h('p', { class: 'warning' }, 'This token will not be shown again: copy it now and hand it to the tenant.'));
}

function createForm(onCreated) {
  const input = h('input', { id: 'tenant-name', name: 'name', type: 'text', autocomplete: 'off', required: true });
  const button = h('button', { type: 'submit', id: 'create-tenant' }, 'Create tenant');
  const form = h('form', { id: 'tenant-form', class: 'filters', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'tenant-name' }, 'Name'), input),
    h('div', { class: 'actions' }, button));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearError();
    clearFieldErrors(form);
    button.disabled = true;
    try {
      const tenant = await post('/v1/tenants', { name: input.value });
      input.value = '';
      onCreated(tenant);
    } catch (err) {
      showProblem(err);
      showFieldErrors(form, err.fieldErrors, (f) => (f === 'name' ? 'tenant-name' : null));
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

// A tenant's tokens, with revoke and create.
async function tokensPanel(tenant, slot) {
  replace(slot, loading('tokens'));
  let tokens;
  try {
    tokens = (await get(url('/v1/tokens', { tenant_id: tenant.id }))).data;
  } catch (err) {
    showProblem(err);
    replace(slot, h('p', { class: 'empty' }, 'The tokens could not be loaded.'));
    return;
  }
  const rows = tokens.map((t) => {
    const revoke = h('button', { type: 'button', class: 'button-danger revoke-token' }, 'Revoke');
    revoke.addEventListener('click', async () => {
      if (!window.confirm(`Revoke the token ${t.prefix}…${t.name ? ` (${t.name})` : ''}? Requests with it are refused within seconds.`)) return;
      clearError();
      try {
        await del(path('tokens', t.id));
        tokensPanel(tenant, slot);
      } catch (err) {
        showProblem(err);
      }
    });
    return h('tr', { dataset: { tokenId: t.id } },
      h('td', {}, t.name || '—'),
      h('td', {}, h('code', {}, `${t.prefix}…`)),
      h('td', {}, timeAgo(t.created_at)),
      h('td', {}, timeAgo(t.last_used_at, 'never')),
      h('td', {}, revoke));
  });
  const nameId = `token-name-${tenant.id}`;
  const nameInput = h('input', { id: nameId, name: 'name', type: 'text', autocomplete: 'off' });
  const createButton = h('button', { type: 'submit', class: 'create-token' }, 'Create token');
  const form = h('form', { class: 'filters token-form', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: nameId }, 'New token name (optional)'), nameInput),
    h('div', { class: 'actions' }, createButton));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearError();
    createButton.disabled = true;
    try {
      const answer = await post(path('tenants', tenant.id, 'tokens'), nameInput.value ? { name: nameInput.value } : undefined);
      await tokensPanel(tenant, slot);
      slot.prepend(tokenShownOnce('new-token', `New token for ${tenant.name}`, answer.token));
      slot.querySelector('#new-token-title').focus();
    } catch (err) {
      showProblem(err);
      createButton.disabled = false;
    }
  });
  replace(slot,
    h('h3', {}, `Tokens of ${tenant.name}`),
    tokens.length
      ? tableWrap(`Tokens of ${tenant.name}`, h('table', { class: 'tokens' },
        h('thead', {}, h('tr', {}, ['Name', 'Prefix', 'Created', 'Last used', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows)))
      : h('p', { class: 'empty' }, 'No tokens: the tenant cannot call the API.'),
    form);
}

// The tenants; `noteSlot` takes the note after a deletion.
async function loadList(body, page, noteSlot) {
  replace(body, loading('tenants'));
  let answer;
  try {
    answer = await get(url('/v1/tenants', { page, per_page: PER_PAGE }));
  } catch (err) {
    if (err.status === 404 || err.status === 405) {
      replace(body, h('p', { class: 'empty' }, 'This server cannot list tenants yet (GET /v1/tenants is not available). Creating one still works.'));
    } else {
      showProblem(err);
      replace(body, h('p', { class: 'empty' }, 'The tenants could not be loaded.'));
    }
    return;
  }
  if (answer.data.length === 0) {
    replace(body, h('p', { class: 'empty', id: 'tenants-empty' }, 'No tenants yet — create one above.'));
    return;
  }
  const rows = answer.data.map((t) => {
    const panelRow = h('tr', { class: 'panel-row', hidden: true });
    const panel = h('td', { colspan: 4, id: `tokens-${t.id}` });
    panelRow.append(panel);
    const tokens = h('button', { type: 'button', class: 'button-secondary manage-tokens', 'aria-expanded': 'false', 'aria-controls': panel.id }, 'Tokens');
    tokens.addEventListener('click', () => {
      const open = panelRow.hidden;
      // One panel at a time.
      for (const row of body.querySelectorAll('.panel-row')) row.hidden = true;
      for (const b of body.querySelectorAll('.manage-tokens')) b.setAttribute('aria-expanded', 'false');
      panelRow.hidden = !open;
      tokens.setAttribute('aria-expanded', String(open));
      if (open) tokensPanel(t, panel);
      else panel.replaceChildren();
    });
    const remove = h('button', { type: 'button', class: 'button-danger delete-tenant' }, 'Delete');
    remove.addEventListener('click', async () => {
      if (!window.confirm(`Delete the tenant “${t.name}”? Its tokens and webhooks stop at once; its webhooks, events, deliveries and tokens are then removed. This cannot be undone.`)) return;
      clearError();
      remove.disabled = true;
      try {
        await del(path('tenants', t.id)); // 202: the data goes in the background
        const done = note(`Tenant ${t.name} is being deleted: its tokens and webhooks stopped, its data is removed in the background.`,
          { id: 'tenant-deleted', tabindex: '-1' });
        replace(noteSlot, done);
        done.focus(); // the button goes with the row
        loadList(body, page, noteSlot);
      } catch (err) {
        showProblem(err);
        if (err.status === 404) loadList(body, page, noteSlot); // already gone
        else remove.disabled = false;
      }
    });
    return [
      h('tr', { dataset: { tenantId: t.id } },
        h('td', {}, t.name),
        h('td', {}, h('code', {}, t.id)),
        h('td', {}, timeAgo(t.created_at)),
        h('td', { class: 'row-actions' }, tokens, ' ', remove)),
      panelRow,
    ];
  });
  const pages = Math.max(1, Math.ceil(answer.total / answer.per_page));
  replace(body,
    tableWrap('Tenants', h('table', { id: 'tenants' },
      h('thead', {}, h('tr', {}, ['Name', 'ID', 'Created', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows))),
    pages > 1 && h('nav', { class: 'pager', 'aria-label': 'Pages' },
      page > 1 && h('a', { href: hashWithQuery('tenants', { page: page - 1 }), id: 'prev-page', class: 'button button-secondary' }, 'Previous'),
      h('span', {}, `Page ${page} of ${pages} (${answer.total} tenants)`),
      page < pages && h('a', { href: hashWithQuery('tenants', { page: page + 1 }), id: 'next-page', class: 'button button-secondary' }, 'Next')));
}

export async function list(view, { query }) {
  const page = Math.max(1, Number.parseInt(query.get('page'), 10) || 1);
  const createdSlot = h('div', {});
  const noteSlot = h('div', {});
  const body = h('div', {});
  view.append(
    h('h1', { tabindex: '-1' }, 'Tenants'),
    h('section', { class: 'card', 'aria-labelledby': 'create-tenant-title' },
      h('h2', { id: 'create-tenant-title' }, 'New tenant'),
      createForm((tenant) => {
        replace(createdSlot, tokenShownOnce('tenant-token', `Tenant ${tenant.name} created`, tenant.token));
        createdSlot.querySelector('#tenant-token-title').focus();
        loadList(body, page, noteSlot);
      }),
      createdSlot),
    h('h2', {}, 'All tenants'),
    noteSlot,
    body);
  await loadList(body, page, noteSlot);
}
