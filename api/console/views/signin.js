// Sign-in: a tenant or admin API token (or a portal session's), kept in
// sessionStorage only.

import { session, get, url } from '../api.js';
import { h, showError, clearError } from '../dom.js';

// Which kind of token this is: 'tenant', 'admin', 'portal', or null
// (refused). Throws the API's error when it could not tell (unavailable,
// network).
async function probe() {
  if (session.token().startsWith('hrlp_')) {
    // A customer portal session pasted here rather than opened as a link.
    try {
      await get('/v1/portal-sessions/current', { quiet401: true });
      return 'portal';
    } catch (err) {
      if (err.status === 401 || err.status === 403) return null;
      throw err;
    }
  }
  try {
    await get(url('/v1/webhooks', { per_page: 1 }), { quiet401: true });
    return 'tenant';
  } catch (tenantError) {
    if (tenantError.status !== 401 && tenantError.status !== 403) throw tenantError;
    try {
      await get(url('/v1/tenants', { page: 1, per_page: 1 }), { quiet401: true });
      return 'admin';
    } catch (adminError) {
      // A 403 on the tenant route means the token is valid but not a
      // tenant's: the admin token, even where the tenant list is missing.
      const noListRoute = adminError.status === 404 || adminError.status === 405;
      if (tenantError.status === 403 && noListRoute) return 'admin';
      if (adminError.status === 401 || adminError.status === 403 || noListRoute) return null;
      throw adminError;
    }
  }
}

export function render(view, { onSignedIn }) {
  const input = h('input', {
    id: 'token', name: 'token', type: 'password', autocomplete: 'off',
    spellcheck: 'false', 'aria-describedby': 'token-help', required: true,
  });
  const button = h('button', { type: 'submit', id: 'sign-in' }, 'Sign in');
  const status = h('p', { class: 'note', role: 'status' });

  const form = h('form', { id: 'signin-form', class: 'card form', novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'token' }, 'API token'),
      input,
      h('p', { id: 'token-help', class: 'help' },
        'A tenant token (hrld_…) or the admin token. It is kept in this browser tab only, until you sign out or close the tab.')),
    h('div', { class: 'actions' }, button),
    status);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearError();
    const token = input.value.trim();
    if (!token) {
      showError('Enter an API token.');
      input.focus();
      return;
    }
    button.disabled = true;
    status.textContent = 'Checking the token…';
    session.signIn(token);
    let kind = null;
    try {
      kind = await probe();
    } catch (err) {
      session.signOut();
      showError(err.message);
      return;
    } finally {
      button.disabled = false;
      status.textContent = '';
    }
    if (!kind) {
      session.signOut();
      showError('This token was not accepted');
      input.select();
      return;
    }
    input.value = '';
    onSignedIn(kind);
  });

  view.append(
    h('h1', { tabindex: '-1' }, 'Sign in'),
    h('p', {}, 'Sign in with a Herald API token to manage webhooks and follow their deliveries.'),
    form);
  input.focus();
}
