// Same-origin calls to the Herald API. The token lives in sessionStorage
// only, and travels in the Authorization header, never in a URL.

const TOKEN_KEY = 'herald.token';
const KIND_KEY = 'herald.kind'; // 'tenant', 'admin' or 'portal': which pages to show
// 'expired' or 'closed': a customer portal session ended in this tab, so
// the tab shows that rather than the token sign-in form.
const ENDED_KEY = 'herald.portal-ended';

// What the portal session reaches (GET /v1/portal-sessions/current), once
// asked; kept for the page only.
let portalScope = null;

export const session = {
  token: () => sessionStorage.getItem(TOKEN_KEY),
  kind: () => sessionStorage.getItem(KIND_KEY),
  signIn(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.removeItem(KIND_KEY);
    sessionStorage.removeItem(ENDED_KEY);
    portalScope = null;
  },
  setKind: (kind) => sessionStorage.setItem(KIND_KEY, kind),
  signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(KIND_KEY);
    portalScope = null;
  },
  portalScope: () => portalScope,
  setPortalScope(scope) {
    portalScope = scope;
  },
  // How a portal session ended in this tab (null: it did not).
  portalEnded: () => sessionStorage.getItem(ENDED_KEY),
  endPortal(how) {
    this.signOut();
    sessionStorage.setItem(ENDED_KEY, how);
  },
  forgetPortalEnd: () => sessionStorage.removeItem(ENDED_KEY),
};

// Whether this session may do `what`, to hide what it may not (the API
// refuses it anyway): 'write' is test calls and retries, 'manage' is
// creating and changing webhooks and recovering failures. A tenant token
// may do both; a read-only portal session neither; a portal session
// narrowed to some webhooks or event types only 'write'.
export function may(what) {
  if (session.kind() !== 'portal') return true;
  const scope = portalScope;
  if (!scope || scope.read_only) return false;
  if (what === 'write') return true;
  return !Array.isArray(scope.webhook_ids) && !Array.isArray(scope.event_types);
}

// An error answer (application/problem+json) or a failed request.
export class ApiError extends Error {
  constructor(status, problem = {}) {
    super(problem.detail || problem.title || `The API answered ${status}`);
    this.status = status; // 0: the request did not reach the API
    this.problem = problem;
    this.fieldErrors = Array.isArray(problem.errors) ? problem.errors : [];
  }
}

// Called on a 401 (app.js signs out and shows the sign-in view).
let unauthorized = () => {};
export function onUnauthorized(handler) {
  unauthorized = handler;
}

// Calls `path` (`/v1/…`). Answers the parsed JSON (null for 204), or with
// `{raw: true}` the body text. Throws ApiError. `{quiet401: true}` leaves
// a 401 to the caller (the sign-in probes).
export async function request(method, path, body, { raw = false, quiet401 = false } = {}) {
  const headers = { Accept: 'application/json' };
  const token = session.token();
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, { detail: `Could not reach the Herald API (${e.message}).` });
  }
  const text = await response.text();
  if (!response.ok) {
    const error = new ApiError(response.status, parseProblem(text, response));
    if (response.status === 401 && !quiet401) unauthorized(error);
    throw error;
  }
  if (raw) return text;
  if (response.status === 204 || text === '') return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(response.status, { detail: 'The API answered something that is not JSON.' });
  }
}

function parseProblem(text, response) {
  try {
    const problem = JSON.parse(text);
    if (problem && typeof problem === 'object') return problem;
  } catch {
    // not JSON: described below
  }
  const retry = response.headers.get('Retry-After');
  return {
    status: response.status,
    detail: `The API answered ${response.status} ${response.statusText}`.trim()
      + (retry ? `; try again in ${retry} s.` : '.'),
  };
}

export const get = (path, options) => request('GET', path, undefined, options);
export const post = (path, body, options) => request('POST', path, body, options);
export const patch = (path, body, options) => request('PATCH', path, body, options);
export const del = (path, options) => request('DELETE', path, undefined, options);

// `/v1/…` with a query string; empty values dropped, ids encoded.
export function url(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const qs = q.toString();
  return qs ? `${path}?${qs}` : path;
}

// `/v1/<resource>/<id>[/<action>]` with the id encoded.
export const path = (resource, id, action) =>
  `/v1/${resource}/${encodeURIComponent(id)}${action ? `/${action}` : ''}`;

// Every webhook of the tenant (for names and the filter selects), at most
// `pages` pages of 100.
export async function allWebhooks(pages = 10) {
  const all = [];
  for (let page = 1; page <= pages; page += 1) {
    const answer = await get(url('/v1/webhooks', { page, per_page: 100 }));
    all.push(...answer.data);
    if (all.length >= answer.total || answer.data.length === 0) break;
  }
  return all;
}
