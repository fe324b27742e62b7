// The optional DNS resolver: on a device's page, what it reaches out to
// (the names it looked up, the known clouds among them) and its policy;
// on the Privacy page, the resolver's counts and the cloud domain lists.
//
// The names a device looked up are the home's: they are shown as text
// only, and never go into the URL, storage or the console.

import { api } from './api.js';
import { ago, busy, confirmDialog, deviceName, errorLine, field, h, timeEl, uid } from './dom.js';

/** How often an open page asks again (names arrive as devices look up). */
const POLL_MS = 5000;

const POLICIES = [
  ['observe', 'Observe', 'Answer every lookup and keep a record of the names. Nothing is blocked.'],
  ['block_cloud', 'Block known clouds', 'Names under a known cloud domain (the shipped list and yours) are answered as if they did not exist; everything else resolves.'],
  ['lan_only', 'LAN only', 'No name outside your home network resolves: the device can reach only local things.'],
];

function plural(n, noun) {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** "5 minutes ago", with the full time for screen readers and on hover. */
function when(secs) {
  const full = timeEl(secs);
  if (!full) return null;
  return [h('span', { title: full.title, 'aria-hidden': 'true' }, ago(secs)), h('span', { class: 'vh' }, full)];
}

/** The cloud badge: whose cloud a name belongs to. */
function cloudBadge(n) {
  if (!n.cloud) return null;
  const whose = n.vendor ? `${n.vendor} cloud` : 'cloud · your list';
  return h('span', { class: 'badge cloud', 'data-testid': 'dns-cloud-badge', title: `Under ${n.cloud}` }, whose);
}

function nameRow(n) {
  const blocked = Number(n.blocked ?? 0);
  return h(
    'li',
    { class: ['dns-name-row', n.cloud && 'is-cloud', blocked && 'is-blocked'], 'data-testid': 'dns-name' },
    h('div', { class: 'dns-name-head' }, h('code', { class: 'dns-name', 'data-testid': 'dns-name-text' }, n.name), cloudBadge(n)),
    h(
      'p',
      { class: 'hint dns-name-facts' },
      plural(Number(n.count ?? 0), 'lookup'),
      blocked ? [', ', h('strong', { class: 'dns-blocked', 'data-testid': 'dns-blocked' }, `${blocked} blocked`)] : null,
      ' · last ',
      when(n.last),
    ),
  );
}

/** The policy: three radio buttons, each with its one-line explanation. */
function policyChoice(ctx, id, onSaved) {
  const error = errorLine('dns-policy-error');
  const name = uid('dns-policy');
  const inputs = new Map();
  const fieldset = h(
    'fieldset',
    { class: 'dns-policy', 'data-testid': 'dns-policy' },
    h('legend', null, 'What it may look up'),
    POLICIES.map(([value, label, explain]) => {
      const inputId = `${name}-${value}`;
      const hintId = `${inputId}-hint`;
      const input = h('input', { type: 'radio', name, value, id: inputId, 'aria-describedby': hintId, 'data-testid': `dns-policy-${value}` });
      inputs.set(value, input);
      return h('div', { class: 'dns-policy-option' }, input, h('label', { for: inputId }, label), h('p', { class: 'hint', id: hintId }, explain));
    }),
  );
  let current = null;
  const set = (policy) => {
    current = policy;
    for (const [value, input] of inputs) input.checked = value === policy;
  };
  fieldset.addEventListener('change', async (event) => {
    const policy = event.target.value;
    if (!policy || policy === current) return;
    error.clear();
    const done = busy(fieldset);
    try {
      const d = await api('PUT', `/api/devices/${encodeURIComponent(id)}/dns`, { policy });
      done();
      set(d.policy);
      const label = POLICIES.find(([v]) => v === d.policy)?.[1] ?? d.policy;
      ctx.status(`DNS policy for ${deviceName(ctx.device(id) ?? {})}: ${label}.`);
      onSaved(d);
    } catch (e) {
      done();
      set(current);
      error.set(e.message);
    }
  });
  return { el: h('div', null, fieldset, error.el), set };
}

/** The "Reaches out to" section of one device's page. */
export function deviceDnsSection(ctx, id) {
  const body = h('div', null, h('p', null, 'Loading…'));
  const section = h(
    'section',
    { class: 'panel', 'aria-labelledby': 'dns-device-heading', 'data-testid': 'dns-device' },
    h('h2', { id: 'dns-device-heading' }, 'Reaches out to'),
    body,
  );
  let policy = null;
  let list = null;
  let summary = null;

  const renderNames = (d) => {
    const names = d.names ?? [];
    const clouds = d.clouds ?? [];
    summary.replaceChildren(
      `${plural(Number(d.queries ?? 0), 'lookup')} seen`,
      clouds.length ? [', of which known clouds: ', clouds.join(', ')] : '',
      '.',
    );
    if (names.length) {
      list.replaceChildren(h('ul', { class: 'rows dns-names', 'data-testid': 'dns-names' }, names.map(nameRow)));
    } else if (d.may_use_own_dns) {
      list.replaceChildren(
        h(
          'p',
          { class: 'notice', 'data-testid': 'dns-own' },
          h('strong', null, 'No lookups seen: it may use its own DNS'),
          ' (a hard-coded resolver or DNS over HTTPS), which hearth cannot see. docs/dns.md says how to redirect port 53 to hearth on common routers.',
        ),
      );
    } else {
      list.replaceChildren(h('p', { class: 'empty', 'data-testid': 'dns-none' }, 'No lookups seen yet. Names appear here as the device looks them up through hearth.'));
    }
  };

  const render = (d) => {
    if (!policy) {
      policy = policyChoice(ctx, id, renderNames);
      summary = h('p', { class: 'hint', 'data-testid': 'dns-summary' });
      list = h('div');
      body.replaceChildren(
        h('p', null, 'The names this device looked up through hearth’s DNS, most recent first. A name under a known vendor cloud is marked.'),
        summary,
        list,
        h('h3', null, 'Policy'),
        policy.el,
      );
    }
    policy.set(d.policy);
    renderNames(d);
  };

  const load = async () => {
    try {
      const st = await api('GET', '/api/dns');
      if (!ctx.scope.alive) return false;
      if (!st.enabled) {
        body.replaceChildren(h('p', { 'data-testid': 'dns-off' }, 'hearth’s DNS resolver is off, so it cannot see what this device looks up. To turn it on: ', st.how_to_enable));
        policy = null;
        return false;
      }
      const d = await api('GET', `/api/devices/${encodeURIComponent(id)}/dns`);
      if (ctx.scope.alive) render(d);
      return true;
    } catch (e) {
      if (ctx.scope.alive && !policy) body.replaceChildren(h('p', { class: 'form-error' }, `Could not load what it looks up: ${e.message}`));
      return false;
    }
  };
  let on = false;
  load().then((ok) => {
    on = ok;
  });
  ctx.scope.every(POLL_MS, async () => {
    if (on && !document.hidden) await load();
  });
  return section;
}

// --- the Privacy page's DNS section ------------------------------------------

function countsList(st) {
  const c = st.counts ?? {};
  const item = (label, value, testid) => [h('dt', null, label), h('dd', { 'data-testid': testid }, String(Number(value ?? 0)))];
  return h(
    'dl',
    { class: 'kv dns-counts', 'data-testid': 'dns-counts' },
    item('From your devices', c.from_devices, 'dns-count-devices'),
    item('From other clients (counted, never recorded)', c.from_others, 'dns-count-others'),
    item('Answered from the cache', c.cache_hits, 'dns-count-cache'),
    item('Blocked by a device’s policy', c.blocked, 'dns-count-blocked'),
    item('Dropped: too many from one client', c.rate_limited, 'dns-count-limited'),
  );
}

function shippedList(lists) {
  const vendors = lists.shipped ?? [];
  return h(
    'details',
    { class: 'dns-shipped', 'data-testid': 'dns-shipped' },
    h('summary', null, `Clouds hearth knows: ${plural(vendors.length, 'vendor')}`),
    h(
      'ul',
      { class: 'rows' },
      vendors.map((v) =>
        h(
          'li',
          { class: 'dns-vendor', 'data-testid': 'dns-vendor' },
          h('h4', null, v.name),
          h('p', { class: 'dns-domains' }, (v.domains ?? []).map((d, i) => [i ? ' ' : null, h('code', null, d)])),
          v.note ? h('p', { class: 'hint' }, v.note) : null,
          v.source ? h('p', { class: 'hint' }, 'Source: ', h('a', { href: v.source, rel: 'noreferrer noopener', target: '_blank', class: 'dns-source' }, v.source)) : null,
        ),
      ),
    ),
  );
}

function ownerDomains(ctx, lists, onChange) {
  const error = errorLine('dns-owner-error');
  const domain = field('Cloud domain', { name: 'domain', autocomplete: 'off', spellcheck: 'false', maxlength: 253, 'data-testid': 'dns-owner-input' }, 'For example “cloud.example.com”: it and every name under it count as a cloud.');
  const form = h(
    'form',
    { class: 'dns-owner-add', novalidate: true, 'data-testid': 'dns-owner-form' },
    domain.wrap,
    error.el,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'button primary', 'data-testid': 'dns-owner-add' }, 'Add')),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.clear();
    const value = domain.input.value.trim().toLowerCase();
    if (!value) {
      error.set('Type a domain.');
      domain.input.focus();
      return;
    }
    const done = busy(form);
    try {
      const next = await api('POST', '/api/dns/clouds', { domain: value });
      done();
      domain.input.value = '';
      ctx.status('Added to your cloud domains.');
      onChange(next);
      domain.input.focus();
    } catch (e) {
      done();
      error.set(e.message);
    }
  });
  const owner = lists.owner ?? [];
  const listError = errorLine('dns-owner-remove-error');
  const rows = owner.map((d) => {
    const remove = h('button', { type: 'button', class: 'button secondary', 'data-testid': 'dns-owner-remove' }, 'Remove');
    remove.addEventListener('click', async () => {
      const ok = await confirmDialog({
        title: 'Remove this cloud domain?',
        body: [h('p', null, h('code', null, d), ' is no longer counted as a cloud: devices set to block known clouds can look it up again.')],
        confirm: 'Remove',
        testid: 'dns-owner-remove-dialog',
      });
      if (!ok) return;
      listError.clear();
      remove.disabled = true;
      try {
        const next = await api('DELETE', `/api/dns/clouds/${encodeURIComponent(d)}`);
        ctx.status('Removed from your cloud domains.');
        onChange(next);
      } catch (e) {
        remove.disabled = false;
        listError.set(e.message);
      }
    });
    return h('li', { class: 'row', 'data-testid': 'dns-owner-domain' }, h('code', { class: 'dns-name' }, d), remove);
  });
  return h(
    'div',
    { 'data-testid': 'dns-owner' },
    h('h3', null, 'Your cloud domains'),
    rows.length ? h('ul', { class: 'rows', 'data-testid': 'dns-owner-list' }, rows) : h('p', { class: 'empty', 'data-testid': 'dns-owner-none' }, 'None yet. Add a domain a device reaches that hearth’s list does not name.'),
    listError.el,
    form,
  );
}

/** Devices seen reaching a known cloud, with a link to each one's page. */
function devicesReaching(ctx, st) {
  const reaching = (st.devices ?? []).filter((d) => (d.clouds ?? []).length);
  if (!reaching.length) return h('p', { 'data-testid': 'dns-reaching-none' }, 'No adopted device has looked up a known cloud domain.');
  return h(
    'ul',
    { class: 'rows', 'data-testid': 'dns-reaching' },
    reaching.map((d) => {
      const device = ctx.device(d.id);
      return h(
        'li',
        { class: 'row' },
        h('a', { href: `#/device/${encodeURIComponent(d.id)}` }, device ? deviceName(device) : 'A device'),
        h('span', { class: 'hint' }, d.clouds.join(', ')),
      );
    }),
  );
}

export function dnsSection(ctx) {
  const body = h('div', null, h('p', null, 'Loading…'));
  const section = h(
    'section',
    { class: 'panel', 'aria-labelledby': 'dns-heading', 'data-testid': 'dns-section' },
    h('h2', { id: 'dns-heading' }, 'What your devices look up (DNS)'),
    h('p', null, 'With hearth as your network’s DNS resolver, you can see which clouds each device reaches out to, and stop it on the device’s page.'),
    body,
  );

  let lists = null;
  let owner = null;
  let stats = null;
  let reaching = null;

  const renderLists = (next) => {
    lists = next;
    const fresh = ownerDomains(ctx, lists, renderLists);
    const focused = owner?.contains(document.activeElement);
    owner.replaceWith(fresh);
    owner = fresh;
    if (focused) owner.querySelector('input')?.focus();
    const shipped = body.querySelector('[data-testid="dns-shipped"]');
    if (shipped) {
      const again = shippedList(lists);
      again.open = shipped.open;
      shipped.replaceWith(again);
    }
  };

  const render = (st, cl) => {
    if (!st.enabled) {
      body.replaceChildren(
        h('p', { 'data-testid': 'dns-status', 'data-state': 'off' }, h('strong', null, 'Off. '), 'hearth does not answer DNS, and sees no lookups.'),
        h('p', { 'data-testid': 'dns-how' }, 'To turn it on: ', st.how_to_enable),
      );
      return;
    }
    const status = h(
      'p',
      { 'data-testid': 'dns-status', 'data-state': 'on' },
      h('strong', null, 'On. '),
      `Answering on ${(st.listening ?? []).join(', ')}, forwarding to ${plural(Number(st.upstreams ?? 0), 'upstream resolver')}. `,
      `Watching ${plural(Number(st.devices_watched ?? 0), 'device')}`,
      st.watching_since ? [' since ', timeEl(st.watching_since)] : null,
      '. ',
      `Cache: ${Number(st.cache_entries ?? 0)} of ${Number(st.cache_capacity ?? 0)} entries.`,
    );
    const nextStats = h('div', null, status, countsList(st));
    const nextReaching = devicesReaching(ctx, st);
    if (stats) {
      stats.replaceWith(nextStats);
      reaching.replaceWith(nextReaching);
      stats = nextStats;
      reaching = nextReaching;
      return;
    }
    stats = nextStats;
    reaching = nextReaching;
    owner = h('div');
    body.replaceChildren(stats, h('h3', null, 'Devices reaching a cloud'), reaching, owner, shippedList(cl));
    renderLists(cl);
  };

  let on = false;
  const load = async () => {
    try {
      const st = await api('GET', '/api/dns');
      const cl = st.enabled && !lists ? await api('GET', '/api/dns/clouds') : lists;
      if (!ctx.scope.alive) return;
      on = st.enabled;
      render(st, cl);
    } catch (e) {
      if (!stats) body.replaceChildren(h('p', { class: 'form-error' }, `Could not load: ${e.message}`));
    }
  };
  ctx.scope.every(POLL_MS, () => {
    if (on && !document.hidden) load();
  });
  ctx.scope.on('devices', () => {
    if (on) load();
  });
  load();
  return section;
}
