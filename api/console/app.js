// Entry point: the hash router, the nav, and signing in and out.

import { session, onUnauthorized } from './api.js';
import { h, replace, clearError, showError, showProblem } from './dom.js';
import * as signin from './views/signin.js';
import * as webhooks from './views/webhooks.js';
import * as deliveries from './views/deliveries.js';
import * as events from './views/events.js';
import * as tenants from './views/tenants.js';

// Which token kind sees which pages; `pattern` matches the path after `#/`.
const ROUTES = [
  { kind: 'tenant', pattern: /^webhooks$/, title: 'Webhooks', view: webhooks.list },
  { kind: 'tenant', pattern: /^webhooks\/new$/, title: 'New webhook', view: webhooks.create },
  { kind: 'tenant', pattern: /^webhooks\/([^/]+)$/, title: 'Webhook', view: webhooks.detail },
  { kind: 'tenant', pattern: /^deliveries$/, title: 'Deliveries', view: deliveries.list },
  { kind: 'tenant', pattern: /^deliveries\/([^/]+)$/, title: 'Delivery', view: deliveries.detail },
  { kind: 'tenant', pattern: /^events$/, title: 'Events', view: events.list },
  { kind: 'tenant', pattern: /^events\/([^/]+)$/, title: 'Event', view: events.detail },
  { kind: 'admin', pattern: /^tenants$/, title: 'Tenants', view: tenants.list },
];

const NAV = {
  tenant: [['webhooks', 'Webhooks'], ['deliveries', 'Deliveries'], ['events', 'Events']],
  admin: [['tenants', 'Tenants']],
};

const HOME = { tenant: '#/webhooks', admin: '#/tenants' };

// A message to show once the next view has rendered (after a sign-out).
let pending = null;
let firstRender = true;

// `#/deliveries?status=failed` -> {path: 'deliveries', query: URLSearchParams}.
function parseHash() {
  const hash = location.hash.replace(/^#\/?/, '');
  const at = hash.indexOf('?');
  return {
    path: (at < 0 ? hash : hash.slice(0, at)).replace(/\/+$/, ''),
    query: new URLSearchParams(at < 0 ? '' : hash.slice(at + 1)),
  };
}

function match(path, kind) {
  for (const route of ROUTES) {
    const m = route.pattern.exec(path);
    if (!m || route.kind !== kind) continue;
    let id;
    try {
      id = m[1] === undefined ? undefined : decodeURIComponent(m[1]);
    } catch {
      return null;
    }
    return { route, id };
  }
  return null;
}

function renderNav(kind, path) {
  const nav = document.getElementById('nav');
  const items = (NAV[kind] || []).map(([target, label]) => {
    const current = path === target || path.startsWith(`${target}/`);
    return h('li', {}, h('a', {
      href: `#/${target}`, id: `nav-${target}`, 'aria-current': current ? 'page' : null,
    }, label));
  });
  replace(nav, items.length ? h('ul', {}, items) : null);
  document.getElementById('sign-out').hidden = !session.token();
  const label = document.getElementById('session-kind');
  label.hidden = !kind;
  replace(label, kind === 'admin' ? 'Admin' : kind === 'tenant' ? 'Tenant' : '');
}

function render() {
  if (location.hash && !location.hash.startsWith('#/')) return; // an in-page anchor
  const { path, query } = parseHash();
  const main = document.getElementById('view');
  const page = h('div', { class: 'page' });
  main.replaceChildren(page);
  clearError();

  const kind = session.token() ? session.kind() : null;
  renderNav(kind, path);
  let title = 'Sign in';
  if (!kind) {
    session.signOut(); // a token without a known kind: sign in again
    renderNav(null, path);
    signin.render(page, { onSignedIn });
  } else {
    const found = match(path, kind);
    if (!found) {
      const known = ROUTES.some((r) => r.pattern.test(path));
      if (!path || path === 'signin' || known) {
        location.replace(HOME[kind]); // the other kind's page, or none: go home
        return;
      }
      title = 'Not found';
      replace(page,
        h('h1', { tabindex: '-1' }, 'Page not found'),
        h('p', {}, 'There is no page at this address. ', h('a', { href: HOME[kind] }, 'Go to the start page'), '.'));
    } else {
      title = found.route.title;
      // Called now, so that the heading exists when focus moves to it.
      try {
        Promise.resolve(found.route.view(page, { id: found.id, query })).catch(showProblem);
      } catch (err) {
        showProblem(err);
      }
    }
  }
  document.title = `${title} · Herald`;
  if (pending) {
    showError(pending);
    pending = null;
  }
  // Focus the page heading on navigation (not on the first load), unless
  // the view put the focus somewhere itself (the sign-in field).
  if (!firstRender && !page.contains(document.activeElement)) page.querySelector('h1')?.focus();
  firstRender = false;
}

// After a successful sign-in: stay on the address if it is this kind's
// page (a deep link), else go to its start page.
function onSignedIn(kind) {
  session.setKind(kind);
  const { path } = parseHash();
  if (match(path, kind)) render();
  else if (location.hash === HOME[kind]) render();
  else location.hash = HOME[kind];
}

function signOut(message) {
  session.signOut();
  pending = message || null;
  if (location.hash === '#/signin') render();
  else location.hash = '#/signin';
}

// A 401 anywhere: the token is gone or revoked.
onUnauthorized(() => {
  if (!session.token()) return;
  session.signOut();
  pending = 'Your token was not accepted (it may have been revoked). Sign in again.';
  render();
});

document.getElementById('sign-out').addEventListener('click', () => signOut());
// The skip link focuses the content without touching the router's hash.
document.querySelector('.skip-link').addEventListener('click', (event) => {
  event.preventDefault();
  document.getElementById('view').focus();
});
window.addEventListener('hashchange', render);
render();
