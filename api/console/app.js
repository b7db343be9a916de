// Entry point: the hash router, the nav, signing in and out, and opening
// a customer portal link.

import { session, get, onUnauthorized } from './api.js';
import { h, replace, loading, clearError, showError, showProblem } from './dom.js';
import * as signin from './views/signin.js';
import * as webhooks from './views/webhooks.js';
import * as deliveries from './views/deliveries.js';
import * as events from './views/events.js';
import * as eventTypes from './views/event-types.js';
import * as tenants from './views/tenants.js';
import * as overview from './views/overview.js';
import * as portal from './views/portal.js';

// A portal session sees a tenant's pages, narrowed by the API.
const TENANT = ['tenant', 'portal'];

// Which token kinds see which pages; `pattern` matches the path after `#/`.
const ROUTES = [
  { kinds: TENANT, pattern: /^webhooks$/, title: 'Webhooks', view: webhooks.list },
  { kinds: TENANT, pattern: /^webhooks\/new$/, title: 'New webhook', view: webhooks.create },
  { kinds: TENANT, pattern: /^webhooks\/([^/]+)$/, title: 'Webhook', view: webhooks.detail },
  { kinds: TENANT, pattern: /^deliveries$/, title: 'Deliveries', view: deliveries.list },
  { kinds: TENANT, pattern: /^deliveries\/([^/]+)$/, title: 'Delivery', view: deliveries.detail },
  { kinds: TENANT, pattern: /^events$/, title: 'Events', view: events.list },
  { kinds: TENANT, pattern: /^events\/([^/]+)$/, title: 'Event', view: events.detail },
  { kinds: TENANT, pattern: /^event-types$/, title: 'Event types', view: eventTypes.list },
  { kinds: ['tenant'], pattern: /^portal$/, title: 'Customer portal', view: portal.page },
  { kinds: ['admin'], pattern: /^overview$/, title: 'Overview', view: overview.page },
  { kinds: ['admin'], pattern: /^tenants$/, title: 'Tenants', view: tenants.list },
];

const NAV = {
  tenant: [['webhooks', 'Webhooks'], ['deliveries', 'Deliveries'], ['events', 'Events'], ['event-types', 'Event types'], ['portal', 'Customer portal']],
  portal: [['webhooks', 'Webhooks'], ['deliveries', 'Deliveries'], ['events', 'Events'], ['event-types', 'Event types']],
  admin: [['overview', 'Overview'], ['tenants', 'Tenants']],
};

const HOME = { tenant: '#/webhooks', portal: '#/webhooks', admin: '#/overview' };

// A message to show once the next view has rendered (after a sign-out).
let pending = null;
let firstRender = true;

// A portal link, `/console/#portal=hrlp_…`: the token goes to this tab's
// session storage and leaves the address bar at once, so that it stays in
// neither the history nor an address someone copies.
function openPortalLink() {
  if (!location.hash.startsWith('#portal=')) return false;
  const token = location.hash.slice('#portal='.length).trim();
  history.replaceState(null, '', '/console/#/webhooks');
  if (token) {
    session.signIn(token);
    session.setKind('portal');
  }
  return true;
}
openPortalLink(); // before anything reads the address or the session

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
    if (!m || !route.kinds.includes(kind)) continue;
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
  const isPortal = kind === 'portal';
  const scope = isPortal ? session.portalScope() : null;
  document.body.classList.toggle('portal', isPortal);
  document.body.classList.toggle('read-only', Boolean(scope?.read_only));
  const signOutButton = document.getElementById('sign-out');
  signOutButton.hidden = !session.token();
  replace(signOutButton, isPortal ? 'Close' : 'Sign out');
  const label = document.getElementById('session-kind');
  label.hidden = !kind || isPortal;
  replace(label, kind === 'admin' ? 'Admin' : kind === 'tenant' ? 'Tenant' : '');
  const badge = document.getElementById('portal-badge');
  badge.hidden = !isPortal;
  replace(badge, isPortal && 'Customer portal', scope?.read_only && [' · ', h('span', { class: 'badge-flag' }, 'read-only')]);
  if (scope?.expires_at) badge.title = `Open until ${new Date(scope.expires_at).toLocaleString()}`;
  else badge.removeAttribute('title');
}

// What a customer sees once their portal session ended in this tab: never
// the token sign-in form.
function portalEnded(page, how) {
  if (how === 'closed') {
    replace(page, h('section', { id: 'portal-closed', class: 'card' },
      h('h1', { tabindex: '-1' }, 'Portal closed'),
      h('p', {}, 'You closed the customer portal. To come back, open the link you were given again while it is valid, or ask for a new one.')));
    return 'Portal closed';
  }
  replace(page, h('section', { id: 'portal-expired', class: 'card' },
    h('h1', { tabindex: '-1' }, 'This portal link has expired'),
    h('p', {}, 'The link has expired or was revoked. Ask whoever gave it to you for a new one.')));
  return 'Portal link expired';
}

// Asks once what the portal session reaches, then renders again.
let scopeLoading = false;
async function loadPortalScope(page) {
  replace(page, loading('the portal'));
  if (scopeLoading) return;
  scopeLoading = true;
  let scope;
  try {
    scope = await get('/v1/portal-sessions/current');
  } catch (err) {
    if (err.status === 401) return; // onUnauthorized shows the expired page
    showProblem(err);
    const again = h('button', { type: 'button', id: 'portal-retry', on: { click: () => render() } }, 'Try again');
    replace(page, h('h1', { tabindex: '-1' }, 'Customer portal'),
      h('p', { class: 'empty' }, 'The portal could not be opened. '), again);
    return;
  } finally {
    scopeLoading = false;
  }
  session.setPortalScope(scope);
  render();
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
  if (kind === 'portal' && !session.portalScope()) {
    document.title = 'Customer portal · Herald';
    loadPortalScope(page);
    return;
  }
  const ended = !kind && session.portalEnded();
  if (ended && path !== 'signin') {
    session.signOut();
    renderNav(null, path);
    title = portalEnded(page, ended);
  } else if (!kind) {
    session.signOut(); // a token without a known kind: sign in again
    session.forgetPortalEnd();
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

// A 401 anywhere: the token is gone or revoked, or the portal session
// expired.
onUnauthorized(() => {
  if (!session.token()) return;
  if (session.kind() === 'portal') {
    session.endPortal('expired');
    render();
    return;
  }
  session.signOut();
  pending = 'Your token was not accepted (it may have been revoked). Sign in again.';
  render();
});

// Sign out; in the portal, "Close" only forgets the session in this tab.
document.getElementById('sign-out').addEventListener('click', () => {
  if (session.kind() === 'portal') {
    session.endPortal('closed');
    render();
  } else {
    signOut();
  }
});
// The skip link focuses the content without touching the router's hash.
document.querySelector('.skip-link').addEventListener('click', (event) => {
  event.preventDefault();
  document.getElementById('view').focus();
});
window.addEventListener('hashchange', () => {
  openPortalLink(); // a portal link opened in a tab already showing the console
  render();
});
render();
