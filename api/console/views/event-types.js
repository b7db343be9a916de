// The event-type catalog: each type with its description, schema and
// examples, by group, read-only (changed through /v1/event-types).

import { get } from '../api.js';
import { h, replace, loading, showProblem, jsonPre } from '../dom.js';

export async function list(view) {
  view.append(h('h1', { tabindex: '-1' }, 'Event types'));
  const body = h('div', {}, loading('the event types'));
  view.append(body);
  let answer;
  try {
    answer = await get('/v1/event-types');
  } catch (err) {
    showProblem(err);
    replace(body, h('p', { class: 'empty' }, 'The event types could not be loaded.'));
    return;
  }
  const { data } = answer;
  if (!data.length) {
    replace(body, h('p', { class: 'empty', id: 'event-types-empty' },
      'No event types are catalogued. Describe one with POST /v1/event-types.'));
    return;
  }
  const groups = new Map();
  for (const t of data) {
    const group = t.group || 'Other';
    if (!groups.has(group)) groups.set(group, []);
    groups.get(group).push(t);
  }
  const sections = [...groups].map(([group, types]) => h('section', { class: 'event-type-group' },
    h('h2', {}, group),
    ...types.map((t) => h('article', { class: 'event-type', dataset: { name: t.name } },
      h('h3', {}, h('code', {}, t.name), t.deprecated ? h('span', { class: 'badge' }, ' deprecated') : ''),
      t.description ? h('p', {}, t.description) : '',
      h('details', {}, h('summary', {}, 'Schema'),
        t.schema ? jsonPre(t.schema, { class: 'json event-type-schema' }) : h('p', {}, 'Any data.')),
      ...t.examples.map((e, i) => h('details', { open: i === 0 },
        h('summary', {}, `Example ${i + 1}`), jsonPre(e, { class: 'json event-type-example' })))))));
  replace(body, h('div', { id: 'event-types' }, ...sections));
}
