// Privacy: what hearth stores, in what form, and what leaves the house.

import { api } from './api.js';
import { dnsSection } from './dns.js';
import { h } from './dom.js';

export function renderPrivacy(ctx) {
  const stored = h('div', { 'data-testid': 'privacy-stored' }, h('p', null, 'Loading…'));
  const leaves = h('div', { 'data-testid': 'privacy-leaves' }, h('p', null, 'Loading…'));
  const shared = h('div', { 'data-testid': 'privacy-shared' }, h('p', null, 'Loading…'));
  const counts = h('div', { 'data-testid': 'privacy-counts' }, h('p', null, 'Loading…'));
  ctx.main.append(
    h('h1', null, 'Privacy'),
    h('p', { class: 'lead' }, 'Everything hearth knows about your home stays on this hub. This page lists what it stores, in what form, and what ever leaves the house.'),
    h('section', { class: 'panel', 'aria-labelledby': 'stored-heading' }, h('h2', { id: 'stored-heading' }, 'What is stored on this hub'), stored),
    h('section', { class: 'panel', 'aria-labelledby': 'held-heading' }, h('h2', { id: 'held-heading' }, 'What it holds now'), counts),
    h('section', { class: 'panel', 'aria-labelledby': 'shared-heading' }, h('h2', { id: 'shared-heading' }, 'What integrations are told'), shared),
    h('section', { class: 'panel', 'aria-labelledby': 'leaves-heading' }, h('h2', { id: 'leaves-heading' }, 'What leaves the house'), leaves),
    dnsSection(ctx),
  );

  (async () => {
    try {
      const p = await api('GET', '/api/privacy');
      if (!ctx.scope.alive) return;
      const rows = p?.stored ?? [];
      stored.replaceChildren(
        rows.length
          ? h(
              'div',
              { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': 'What is stored, by kind' },
              h(
                'table',
                { class: 'stack' },
                h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'What'), h('th', { scope: 'col' }, 'In what form'))),
                h('tbody', null, rows.map((r) => h('tr', { 'data-testid': 'privacy-row' }, h('td', { 'data-label': 'What' }, r.what), h('td', { 'data-label': 'In what form' }, r.form)))),
              ),
            )
          : h('p', null, 'Nothing yet.'),
      );
      const held = p?.held ?? [];
      counts.replaceChildren(
        h(
          'div',
          { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': 'What it holds, counted' },
          h(
            'table',
            { class: 'stack' },
            h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'What'), h('th', { scope: 'col' }, 'How many'), h('th', { scope: 'col' }, 'Where'), h('th', { scope: 'col' }, 'In what form'))),
            h(
              'tbody',
              null,
              held.map((r) =>
                h(
                  'tr',
                  { 'data-testid': 'privacy-held' },
                  h('td', { 'data-label': 'What' }, r.what),
                  h('td', { 'data-label': 'How many' }, String(r.count)),
                  h('td', { 'data-label': 'Where' }, r.where),
                  h('td', { 'data-label': 'In what form' }, r.form),
                ),
              ),
            ),
          ),
        ),
        h('h3', null, 'How long it is kept'),
        h('ul', null, (p?.retention ?? []).map((r) => h('li', { 'data-testid': 'privacy-retention' }, r))),
      );
      const told = p?.shared ?? [];
      shared.replaceChildren(
        told.length
          ? h('ul', null, told.map((t) => h(
              'li',
              { 'data-testid': 'privacy-shared-item', 'data-enabled': String(Boolean(t.enabled)), 'data-share-details': String(Boolean(t.share_device_details)) },
              h('strong', null, `${t.with}: `),
              t.what,
              ' ',
              h('a', { href: '#/integrations' }, 'Change'),
              t.links?.length
                ? h('ul', null, t.links.map((l) => h('li', { 'data-testid': 'privacy-voice-link' }, `${l.client_name}: ${l.devices} device${l.devices === 1 ? '' : 's'}, ${l.calls} call${l.calls === 1 ? '' : 's'} so far.`)))
                : null,
            )))
          : h('p', null, 'No integration is set up.'),
      );
      const out = p?.leaves_home ?? [];
      leaves.replaceChildren(
        out.length
          ? h('ul', null, out.map((item) => h('li', { 'data-testid': 'privacy-leaves-item' }, item)))
          : h('p', { 'data-testid': 'privacy-nothing-leaves' }, h('strong', null, 'Nothing. '), 'hearth sends nothing out of your home: no telemetry, no cloud account, no vendor server.'),
      );
    } catch (e) {
      stored.replaceChildren(h('p', { class: 'form-error' }, `Could not load: ${e.message}`));
      leaves.replaceChildren();
      shared.replaceChildren();
      counts.replaceChildren();
    }
  })();
  return 'Privacy';
}
