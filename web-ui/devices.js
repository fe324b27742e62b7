// Discovered devices (adopt or ignore), one device's page (settings,
// credential rotation, forgetting), and the once-only provisioning panel.

import { api } from './api.js';
import { append, busy, checkbox, confirmDialog, deviceName, errorLine, field, h, isSensor, kindLabel, timeEl, uid } from './dom.js';
import { deviceDnsSection } from './dns.js';
import { deviceControls } from './home.js';

const NAME_MAX = 64;

/**
 * The connection details a device needs, shown once: hearth keeps only a
 * hash of the password. `onDone` removes the panel.
 */
export function provisioningPanel(ctx, p, name, onDone) {
  const headingId = uid('provisioning');
  const json = JSON.stringify(p, null, 2);
  const mqtt = p?.mqtt ?? {};
  const jsonPre = h('pre', { class: 'code', 'data-testid': 'provisioning-json', tabindex: 0, 'aria-label': 'Connection details as JSON' }, json);
  const blobUrl = URL.createObjectURL(new Blob([json], { type: 'application/json' }));
  const row = (label, value, testid) => [h('dt', null, label), h('dd', null, h('code', { 'data-testid': testid }, value ?? '—'))];

  const copy = async () => {
    try {
      await navigator.clipboard.writeText(json);
      ctx.status('Copied the connection details to the clipboard.');
    } catch {
      const range = document.createRange();
      range.selectNodeContents(jsonPre);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      ctx.status('The browser did not allow copying. The JSON is selected: press Ctrl+C (or ⌘C) to copy it.', 'error');
    }
  };

  const done = () => {
    URL.revokeObjectURL(blobUrl);
    onDone();
  };

  return h(
    'section',
    { class: 'panel provisioning', 'aria-labelledby': headingId, 'data-testid': 'provisioning' },
    h('h2', { id: headingId, tabindex: -1 }, `Connection details for ${name}`),
    h(
      'p',
      { class: 'once', 'data-testid': 'provisioning-once' },
      h('strong', null, 'Shown once — copy it now.'),
      ' hearth keeps only a hash of this password and cannot show it again. If it is lost, rotate the credential on the device’s page to get a new one.',
    ),
    h(
      'dl',
      { class: 'details' },
      row('Broker (MQTT over TLS)', `${mqtt.host}:${mqtt.port}`, 'provisioning-broker'),
      row('Username', mqtt.username, 'provisioning-username'),
      row('Password', mqtt.password, 'provisioning-password'),
      row('Client id', mqtt.client_id, 'provisioning-client-id'),
    ),
    h('h3', null, 'Topics'),
    h('p', { class: 'hint' }, 'The device may publish and subscribe only on these.'),
    h('ul', { class: 'topics', 'data-testid': 'provisioning-topics' }, (p?.topics ?? []).map((t) => h('li', null, h('code', null, t)))),
    h('h3', null, 'CA certificate'),
    h('p', { class: 'hint' }, 'The device connects over TLS and must trust hearth’s own certificate authority. This certificate is public; it is not a secret.'),
    h('pre', { class: 'code', 'data-testid': 'provisioning-ca', tabindex: 0, 'aria-label': 'CA certificate (PEM)' }, p?.ca_pem ?? ''),
    h('p', null, h('a', { href: '/ca.pem', download: 'hearth-ca.pem', 'data-testid': 'ca-download' }, 'Download the CA certificate (ca.pem)')),
    h('h3', null, 'Everything as JSON'),
    h('p', { class: 'hint' }, 'What hearth devices adopt --json prints, plus the CA certificate’s text (ca_pem).'),
    jsonPre,
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'button', class: 'button secondary', 'data-testid': 'provisioning-copy', on: { click: copy } }, 'Copy JSON'),
      h('a', { class: 'button secondary', href: blobUrl, download: `hearth-device-${p?.id ?? 'device'}.json`, 'data-testid': 'provisioning-save' }, 'Save JSON as a file'),
      h('button', { type: 'button', class: 'button primary', 'data-testid': 'provisioning-done', on: { click: done } }, 'I have copied it'),
    ),
  );
}

function showProvisioning(ctx, slot, p, name) {
  const panel = provisioningPanel(ctx, p, name, () => {
    slot.replaceChildren();
    ctx.main.querySelector('h1')?.focus();
  });
  slot.replaceChildren(panel);
  panel.querySelector('h2').focus();
}

// --- Discovered ------------------------------------------------------------

const ADOPT_KINDS = ['bulb', 'light_strip', 'plug', 'camera', 'doorbell', 'motion_sensor', 'contact_sensor', 'climate_sensor', 'water_sensor'];

/**
 * What a found device is called before the owner names it: the name it
 * announced, else its maker and model, else its kind. Never its id: two
 * identical bulbs are told apart by name, address and MAC, not by hex.
 */
function foundName(d) {
  if (d.advertised_name) return d.advertised_name;
  const made = [d.vendor, d.model].filter(Boolean).join(' ');
  return made || kindLabel(d.kind);
}

/** The facts that tell one found device from another, as `dt`/`dd` pairs. */
function pendingFacts(d) {
  const fact = (label, value, testid) => (value ? [h('dt', null, label), h('dd', { 'data-testid': testid }, value)] : null);
  const addresses = d.addresses ?? [];
  const codes = (list) => list.flatMap((a, i) => [i ? h('br') : null, h('code', null, a)]);
  const firstSeen = typeof d.created_at === 'number' ? timeEl(Math.floor(d.created_at / 1000)) : null;
  return [
    fact('Vendor', d.vendor, 'pending-vendor'),
    fact('Model', d.model, 'pending-model'),
    fact('Board', d.board, 'pending-board'),
    fact('Kind', kindLabel(d.kind), 'pending-kind'),
    fact(addresses.length > 1 ? 'Addresses' : 'Address', addresses.length ? codes(addresses) : null, 'pending-address'),
    fact('MAC', d.mac ? h('code', null, d.mac) : null, 'pending-mac'),
    fact('Advertised as', d.advertised_name, 'pending-advertised'),
    fact('First seen', firstSeen, 'pending-first-seen'),
  ];
}

function pendingCard(ctx, device, onAdopted) {
  const id = device.id;
  const title = h('h2', { class: 'card-title' });
  const meta = h('dl', { class: 'facts' });
  const flag = h('p', { class: 'flag', 'data-testid': 'flagged', hidden: true });
  const error = errorLine('adopt-error');
  const formId = uid('adopt');

  const nickname = field('Nickname', { name: 'nickname', required: true, maxlength: NAME_MAX, autocomplete: 'off', 'data-testid': 'adopt-nickname' }, 'What you call it, for example “Desk lamp”. It is stored encrypted.');
  const room = field('Room', { name: 'room', maxlength: NAME_MAX, autocomplete: 'off', 'data-testid': 'adopt-room' }, 'Optional. Home groups devices by room.');
  // What it is: preset to what discovery made of it, for the owner to
  // correct (a Tasmota advert names no model, so it is found as a plug).
  const kindId = uid('kind');
  const kindHintId = `${kindId}-hint`;
  const kind = h(
    'select',
    { id: kindId, name: 'kind', 'data-testid': 'adopt-kind', 'aria-describedby': kindHintId },
    ADOPT_KINDS.map((k) => h('option', { value: k, selected: k === device.kind }, kindLabel(k))),
  );
  const kindWrap = h(
    'div',
    { class: 'field' },
    h('label', { for: kindId }, 'What it is'),
    kind,
    h('p', { class: 'hint', id: kindHintId }, 'As hearth found it. Change it if hearth guessed wrong.'),
  );
  const form = h(
    'form',
    { id: formId, class: 'adopt-form', hidden: true, novalidate: true, 'data-testid': 'adopt-form' },
    nickname.wrap,
    room.wrap,
    kindWrap,
    error.el,
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'submit', class: 'button primary', 'data-testid': 'adopt-submit' }, 'Adopt'),
      h('button', { type: 'button', class: 'button secondary', on: { click: () => toggleForm(false) } }, 'Cancel'),
    ),
  );

  const open = h('button', { type: 'button', class: 'button primary', 'aria-expanded': 'false', 'aria-controls': formId, 'data-testid': 'adopt-open', 'data-focus-key': `adopt-${id}` }, 'Adopt…');
  const ignore = h('button', { type: 'button', class: 'button secondary', 'data-testid': 'ignore', 'data-focus-key': `ignore-${id}` }, 'Ignore');
  const buttons = h('div', { class: 'actions' }, open, ignore);

  function toggleForm(show) {
    form.hidden = !show;
    open.setAttribute('aria-expanded', String(show));
    if (show) nickname.input.focus();
    else open.focus();
  }
  open.addEventListener('click', () => toggleForm(form.hidden));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.clear();
    const name = nickname.input.value.trim();
    const roomName = room.input.value.trim();
    if (!name) {
      error.set('Give it a nickname.');
      nickname.input.focus();
      return;
    }
    const body = { nickname: name };
    if (roomName) body.room = roomName;
    if (kind.value !== device.kind) body.kind = kind.value;
    const done = busy(form);
    try {
      const provisioning = await api('POST', `/api/devices/${encodeURIComponent(id)}/adopt`, body);
      done();
      onAdopted(provisioning, name);
    } catch (e) {
      done();
      error.set(e.message);
    }
  });

  ignore.addEventListener('click', async () => {
    ignore.disabled = true;
    try {
      await api('POST', `/api/devices/${encodeURIComponent(id)}/ignore`);
      ctx.status(`Ignored the ${kindLabel(device.kind).toLowerCase()}. It is no longer listed.`);
      ctx.main.querySelector('h1')?.focus();
      await ctx.refreshDevices();
    } catch (e) {
      ignore.disabled = false;
      ctx.status(e.message, 'error');
    }
  });

  const el = h('li', { class: 'tile card pending', 'data-testid': 'pending-device', 'data-device-id': id, 'data-kind': device.kind, 'data-profile': device.profile }, title, meta, flag, buttons, form);

  function update(d) {
    title.textContent = foundName(d);
    meta.replaceChildren();
    append(meta, pendingFacts(d));
    el.classList.toggle('flagged', Boolean(d.flagged));
    flag.hidden = !d.flagged;
    flag.replaceChildren(
      h('strong', null, 'Flagged: '),
      'an announcement claimed this device from an address it was never seen at. hearth did not follow it. Check the device before you adopt it.',
    );
  }
  update(device);
  return { el, update };
}

export function renderDiscovered(ctx) {
  const slot = h('div', { 'data-testid': 'provisioning-slot' });
  // The same tile grid as Home.
  const list = h('ul', { class: 'tiles wide', 'data-testid': 'discovered-devices' });
  const empty = h('p', { class: 'empty', 'data-testid': 'pending-empty', hidden: true }, 'Nothing is waiting. Devices appear here when they announce themselves on your network.');
  ctx.main.append(
    h('h1', null, 'Discovered devices'),
    h(
      'p',
      { class: 'lead' },
      'hearth found these on your network. None of them can use hearth until you adopt it: adopting gives a device its own credential, confined to its own topics. Ignore removes one from this list.',
    ),
    slot,
    empty,
    list,
  );

  const cards = new Map();
  const adopted = (provisioning, name) => {
    showProvisioning(ctx, slot, provisioning, name);
    ctx.status(`Adopted ${name}. Copy its connection details now: they are shown once.`);
    ctx.refreshDevices();
  };

  const sync = () => {
    const pending = ctx.devices
      .filter((d) => d.status === 'pending')
      .sort((a, b) => a.kind.localeCompare(b.kind) || a.profile.localeCompare(b.profile) || a.id.localeCompare(b.id));
    const ids = new Set(pending.map((d) => d.id));
    for (const [id, card] of cards) {
      if (!ids.has(id)) {
        card.el.remove();
        cards.delete(id);
      }
    }
    // Cards already shown stay where they are (moving them would drop
    // focus and half-typed forms); new ones go at the end.
    for (const d of pending) {
      const card = cards.get(d.id);
      if (card) card.update(d);
      else {
        const fresh = pendingCard(ctx, d, adopted);
        cards.set(d.id, fresh);
        list.append(fresh.el);
      }
    }
    empty.hidden = pending.length > 0 || !ctx.devicesLoaded;
  };
  ctx.scope.on('devices', sync);
  sync();
  return 'Discovered devices';
}

// --- One device --------------------------------------------------------------

function notFound(ctx) {
  ctx.main.append(
    h('h1', { 'data-testid': 'device-missing' }, 'Device not found'),
    h('p', null, 'hearth does not know this device any more: it may have been forgotten. ', h('a', { href: '#/home' }, 'Back to Home'), '.'),
  );
  return 'Device not found';
}

export function renderDevice(ctx, id) {
  const device = ctx.device(id);
  if (!device || device.status !== 'adopted') return notFound(ctx);

  let baseline = { ...device };
  const title = h('h1', { 'data-testid': 'device-title' }, deviceName(device));
  const meta = h('p', { class: 'lead' }, [kindLabel(device.kind), ` · profile ${device.profile}`, device.model ? ` · ${device.model}` : null]);
  const controls = deviceControls(ctx, device);
  controls.update(device);
  const slot = h('div', { 'data-testid': 'provisioning-slot' });

  // Settings.
  const error = errorLine('device-error');
  const nickname = field('Nickname', { name: 'nickname', required: true, maxlength: NAME_MAX, autocomplete: 'off', 'data-testid': 'device-nickname' });
  const room = field('Room', { name: 'room', maxlength: NAME_MAX, autocomplete: 'off', 'data-testid': 'device-room' }, 'Leave empty for no room.');
  const voiceName = field(
    'Voice name',
    { name: 'voice_name', maxlength: NAME_MAX, autocomplete: 'off', 'data-testid': 'device-voice-name' },
    'What you say to a voice assistant, for example “desk lamp”. Used only if it is exposed to voice assistants.',
  );
  const exposeHa = checkbox(
    'Expose to Home Assistant',
    { name: 'expose_ha', 'data-testid': 'device-expose-ha' },
    'Announces this device to Home Assistant through hearth’s local broker, so Home Assistant can show and control it. Off until you turn it on.',
  );
  const sensor = isSensor(device);
  const exposeVoice = checkbox(
    'Expose to voice assistants',
    { name: 'expose_voice', 'data-testid': 'device-expose-voice', disabled: sensor },
    sensor
      ? 'Cameras, doorbells and sensors are never exposed to voice assistants.'
      : 'Lets the voice assistants you linked turn it on and off under its voice name: nothing else about it. Off until you turn it on.',
  );
  const fill = (d) => {
    nickname.input.value = d.nickname ?? '';
    room.input.value = d.room ?? '';
    voiceName.input.value = d.voice_name ?? '';
    exposeHa.input.checked = Boolean(d.expose_ha);
    exposeVoice.input.checked = Boolean(d.expose_voice);
  };
  fill(device);

  const settings = h(
    'form',
    { class: 'panel', 'data-testid': 'device-settings', novalidate: true, 'aria-labelledby': 'settings-heading' },
    h('h2', { id: 'settings-heading' }, 'Settings'),
    nickname.wrap,
    room.wrap,
    voiceName.wrap,
    exposeHa.wrap,
    exposeVoice.wrap,
    error.el,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'button primary', 'data-testid': 'device-save' }, 'Save')),
  );

  settings.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.clear();
    const next = {
      nickname: nickname.input.value.trim(),
      room: room.input.value.trim(),
      voice_name: voiceName.input.value.trim(),
      expose_ha: exposeHa.input.checked,
      expose_voice: exposeVoice.input.checked,
    };
    if (!next.nickname) {
      error.set('A device needs a nickname.');
      nickname.input.focus();
      return;
    }
    const change = {};
    for (const [key, value] of Object.entries(next)) {
      const before = typeof value === 'boolean' ? Boolean(baseline[key]) : baseline[key] ?? '';
      if (value !== before) change[key] = value;
    }
    if (Object.keys(change).length === 0) {
      ctx.status('Nothing changed.');
      return;
    }
    const done = busy(settings);
    try {
      const updated = await api('PATCH', `/api/devices/${encodeURIComponent(id)}`, change);
      done();
      baseline = { ...baseline, ...(updated ?? next) };
      fill(baseline);
      title.textContent = deviceName(baseline);
      document.title = `${deviceName(baseline)} · hearth`;
      ctx.status(`Saved the settings of ${deviceName(baseline)}.`);
      ctx.refreshDevices();
    } catch (e) {
      done();
      error.set(e.message);
    }
  });

  const rotate = h('button', { type: 'button', class: 'button secondary', 'data-testid': 'rotate' }, 'Rotate credential…');
  rotate.addEventListener('click', async () => {
    const name = deviceName(ctx.device(id) ?? baseline);
    const ok = await confirmDialog({
      title: `Rotate the credential of ${name}?`,
      body: [
        h('p', null, 'hearth makes a new password for this device. The current one stops working at once and its live session is cut.'),
        h('p', null, 'The device stays offline until you give it the new details, which are shown once.'),
      ],
      confirm: 'Rotate credential',
      testid: 'rotate-dialog',
    });
    if (!ok) return;
    rotate.disabled = true;
    rotateError.clear();
    try {
      const p = await api('POST', `/api/devices/${encodeURIComponent(id)}/rotate`);
      showProvisioning(ctx, slot, p, name);
      ctx.status(`${name} has a new credential; the old one no longer works. Copy the new details now: they are shown once.`);
    } catch (e) {
      rotateError.set(e.message);
    } finally {
      rotate.disabled = false;
    }
  });

  const rotateError = errorLine('rotate-error');
  const forgetError = errorLine('forget-error');
  const forget = h('button', { type: 'button', class: 'button danger', 'data-testid': 'forget' }, 'Forget device…');
  let forgetting = false;
  forget.addEventListener('click', async () => {
    const name = deviceName(ctx.device(id) ?? baseline);
    const ok = await confirmDialog({
      title: `Forget ${name}?`,
      body: [
        h('p', null, 'Forgetting this device revokes, at once:'),
        h(
          'ul',
          null,
          h('li', null, h('strong', null, 'its credential'), ': its MQTT password stops working;'),
          h('li', null, h('strong', null, 'its live MQTT session'), ': hearth disconnects it now;'),
          h('li', null, h('strong', null, 'its Home Assistant discovery'), ': it disappears from Home Assistant;'),
          h('li', null, h('strong', null, 'every voice grant'), ': no voice assistant can control it any more;'),
          h('li', null, h('strong', null, 'its sealed data'), ': its name, room, model, addresses and times are erased from hearth’s store.'),
        ),
        h('p', null, 'To use it again, it has to be discovered and adopted anew.'),
      ],
      confirm: 'Forget device',
      danger: true,
      testid: 'forget-dialog',
    });
    if (!ok) return;
    forget.disabled = true;
    forgetting = true;
    forgetError.clear();
    try {
      await api('DELETE', `/api/devices/${encodeURIComponent(id)}`);
      ctx.status(`Forgot ${name}: its credential is revoked, its session cut and its data erased.`, 'ok', { carry: true });
      await ctx.refreshDevices();
      ctx.navigate('#/home');
    } catch (e) {
      forgetting = false;
      forget.disabled = false;
      forgetError.set(e.message);
    }
  });

  const topics = (device.topics ?? []).map((t) => h('li', null, h('code', null, t)));

  ctx.main.append(
    h('p', { class: 'crumb' }, h('a', { href: '#/home' }, '← Home')),
    title,
    meta,
    h('section', { class: 'panel', 'aria-labelledby': 'live-heading' }, h('h2', { id: 'live-heading' }, 'Now'), controls.el),
    slot,
    settings,
    deviceDnsSection(ctx, id),
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'topics-heading' },
      h('h2', { id: 'topics-heading' }, 'Topics'),
      h('p', { class: 'hint' }, 'On hearth’s broker this device may publish and subscribe only on these.'),
      topics.length ? h('ul', { class: 'topics', 'data-testid': 'device-topics' }, topics) : h('p', null, 'None.'),
    ),
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'credential-heading' },
      h('h2', { id: 'credential-heading' }, 'Credential'),
      h('p', null, 'If the device’s password may have leaked, or the device changes hands, rotate it: the old password stops working at once.'),
      h('div', { class: 'actions' }, rotate),
      rotateError.el,
    ),
    h(
      'section',
      { class: 'panel danger-zone', 'aria-labelledby': 'forget-heading' },
      h('h2', { id: 'forget-heading' }, 'Forget'),
      h('p', null, 'Before you give away, sell or throw out this device, forget it: its credential, session, Home Assistant entry and voice grants are revoked, and what hearth stored about it is erased.'),
      h('div', { class: 'actions' }, forget),
      forgetError.el,
    ),
  );

  ctx.scope.on('device', (d) => {
    if (d.id === id) controls.update(d);
  });
  ctx.scope.on('devices', () => {
    const d = ctx.device(id);
    if (!d || d.status !== 'adopted') {
      if (!forgetting) ctx.navigate(location.hash);
      return;
    }
    title.textContent = deviceName(d);
    controls.update(d);
  });
  return deviceName(device);
}
