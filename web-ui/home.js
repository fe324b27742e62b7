// Home: the adopted devices by room, then kind, with live state.

import { api } from './api.js';
import { ago, append, deviceName, dims, h, isLight, keepFocus, kindLabel, sensesMotion, timeEl, uid } from './dom.js';

const KIND_ORDER = ['bulb', 'light_strip', 'plug', 'camera', 'doorbell', 'motion_sensor', 'contact_sensor', 'climate_sensor', 'water_sensor', 'other'];
// How long a command may wait for the device to report its new state
// before the page says it did not answer.
const CONFIRM_MS = 10000;

/**
 * The live part of a device: online state, and its controls (power and
 * brightness for lights, last motion for cameras). Returns the element and
 * an update(device) to apply live state in place.
 */
export function deviceControls(ctx, device) {
  const id = device.id;
  const name = () => deviceName(ctx.device(id) ?? device);
  let current = device;
  let pendingPower = null;
  let sliderTouched = 0;

  const online = h('span', { class: 'badge', 'data-testid': 'device-online' });
  const parts = [online];

  let toggle = null;
  let toggleName = null;
  let powerText = null;
  if (isLight(device)) {
    powerText = h('span', { class: 'power-text', 'data-testid': 'power-state' });
    toggleName = h('span', { class: 'vh' });
    toggle = h(
      'button',
      { type: 'button', class: 'toggle', 'aria-pressed': 'false', 'data-testid': 'power-toggle', 'data-focus-key': `power-${id}` },
      h('span', { class: 'toggle-track', 'aria-hidden': 'true' }, h('span', { class: 'toggle-thumb' })),
      h('span', { class: 'toggle-label' }, 'Power', toggleName),
    );
    toggle.addEventListener('click', async () => {
      const want = current.power !== true;
      pendingPower = { want };
      update(current);
      const ok = await send({ power: want });
      if (!ok) {
        pendingPower = null;
        update(current);
        return;
      }
      const mine = pendingPower;
      ctx.scope.later(CONFIRM_MS, () => {
        if (pendingPower !== mine) return;
        pendingPower = null;
        update(current);
        ctx.status(`${name()} has not confirmed the change yet. It may be offline.`, 'error');
      });
    });
    parts.push(h('div', { class: 'control power' }, toggle, powerText));
  }

  let slider = null;
  let output = null;
  let sliderName = null;
  if (dims(device)) {
    const sliderId = uid('brightness');
    slider = h('input', { type: 'range', id: sliderId, min: 0, max: 100, step: 1, value: 0, 'data-testid': 'brightness', 'data-focus-key': `brightness-${id}` });
    output = h('output', { for: sliderId, class: 'brightness-value', 'data-testid': 'brightness-value' });
    sliderName = h('span', { class: 'vh' });
    slider.addEventListener('input', () => {
      sliderTouched = Date.now();
      output.textContent = `${slider.value}%`;
    });
    slider.addEventListener('change', () => {
      sliderTouched = Date.now();
      send({ brightness: Number(slider.value) });
    });
    parts.push(h('div', { class: 'control brightness' }, h('label', { for: sliderId }, 'Brightness', sliderName), slider, output));
  }

  let motion = null;
  if (sensesMotion(device)) {
    motion = h('p', { class: 'motion', 'data-testid': 'last-motion' });
    parts.push(motion);
  }

  const readingOf = READINGS[device.kind];
  let reading = null;
  if (readingOf) {
    reading = h('p', { class: 'reading', 'data-testid': 'reading' });
    parts.push(reading);
  }

  async function send(body) {
    try {
      await api('POST', `/api/devices/${encodeURIComponent(id)}/command`, body);
      return true;
    } catch (e) {
      ctx.status(`${name()}: ${e.message}`, 'error');
      return false;
    }
  }

  const el = h('div', { class: 'controls' }, parts);

  function update(d) {
    current = d;
    const label = deviceName(d);
    el.closest('.card')?.classList.toggle('offline', !d.online);
    online.dataset.state = d.online ? 'online' : 'offline';
    online.textContent = d.online ? 'Online' : 'Offline';
    if (toggle) {
      if (pendingPower && d.power === pendingPower.want) pendingPower = null;
      toggleName.textContent = `: ${label}`;
      toggle.setAttribute('aria-pressed', d.power === true ? 'true' : 'false');
      const state = d.power === null || d.power === undefined ? 'State unknown' : d.power ? 'On' : 'Off';
      powerText.textContent = pendingPower ? `${state}, turning ${pendingPower.want ? 'on' : 'off'}…` : state;
      powerText.dataset.state = d.power === true ? 'on' : d.power === false ? 'off' : 'unknown';
    }
    if (slider) {
      sliderName.textContent = ` of ${label}`;
      const busyHere = document.activeElement === slider && Date.now() - sliderTouched < 3000;
      if (!busyHere && typeof d.brightness === 'number') slider.value = String(d.brightness);
      output.textContent = typeof d.brightness === 'number' || busyHere ? `${slider.value}%` : 'unknown';
    }
    if (reading) reading.textContent = readingOf(d);
    if (motion) {
      motion.replaceChildren(
        ...(d.last_motion_at ? ['Last motion: ', timeEl(d.last_motion_at), ` (${ago(d.last_motion_at)})`] : ['No motion seen yet.']),
      );
    }
  }

  return { el, update };
}

const known = (v) => v !== null && v !== undefined;
// What a sensor last reported, in words; temperature and humidity come in
// tenths.
const READINGS = {
  contact_sensor: (d) => (known(d.open) ? (d.open ? 'Open' : 'Closed') : 'Not reported yet'),
  water_sensor: (d) => (known(d.water) ? (d.water ? 'Water detected' : 'Dry') : 'Not reported yet'),
  climate_sensor: (d) => {
    const parts = [];
    if (known(d.temperature)) parts.push(`${(d.temperature / 10).toFixed(1)} °C`);
    if (known(d.humidity)) parts.push(`${(d.humidity / 10).toFixed(0)} % humidity`);
    return parts.length ? parts.join(', ') : 'Not reported yet';
  },
};

function byName(a, b) {
  return deviceName(a).localeCompare(deviceName(b)) || a.id.localeCompare(b.id);
}

function deviceCard(ctx, device, controls) {
  const card = h(
    'li',
    { class: 'card', 'data-testid': 'device-card', 'data-device-id': device.id, 'data-kind': device.kind },
    h('h4', { class: 'card-title' }, h('a', { href: `#/device/${encodeURIComponent(device.id)}`, 'data-testid': 'device-link', 'data-focus-key': `link-${device.id}` }, deviceName(device))),
    h('p', { class: 'card-meta' }, [kindLabel(device.kind), device.model ? ` · ${device.model}` : null]),
    controls.el,
  );
  controls.update(device);
  return card;
}

export function renderHome(ctx) {
  const nag = ctx.session.totp_enabled
    ? null
    : h(
        'div',
        { class: 'notice', 'data-testid': 'totp-nag' },
        'Two-factor authentication is off. ',
        h('a', { href: '#/security' }, 'Turn it on in Security'),
        ' so that a stolen password alone cannot open this dashboard.',
      );
  const pendingNote = h('p', { class: 'notice', 'data-testid': 'pending-note', hidden: true });
  const list = h('div', { class: 'rooms', 'data-testid': 'home-devices' });
  append(ctx.main, [h('h1', null, 'Home'), nag, pendingNote, list]);

  const controls = new Map();

  const build = () =>
    keepFocus(() => {
      controls.clear();
      const pending = ctx.devices.filter((d) => d.status === 'pending').length;
      pendingNote.hidden = pending === 0;
      pendingNote.replaceChildren(
        `hearth found ${pending} device${pending === 1 ? '' : 's'} that ${pending === 1 ? 'waits' : 'wait'} for you to adopt or ignore ${pending === 1 ? 'it' : 'them'}. `,
        h('a', { href: '#/discovered' }, 'See discovered devices'),
        '.',
      );
      if (!ctx.devicesLoaded) {
        list.replaceChildren(h('p', null, 'Loading devices…'));
        return;
      }
      const adopted = ctx.devices.filter((d) => d.status === 'adopted');
      if (adopted.length === 0) {
        list.replaceChildren(
          h(
            'p',
            { class: 'empty', 'data-testid': 'home-empty' },
            'No devices yet. Devices that hearth finds on your network wait on the ',
            h('a', { href: '#/discovered' }, 'Discovered'),
            ' page until you adopt them.',
          ),
        );
        return;
      }
      const rooms = new Map();
      for (const d of adopted) {
        const room = d.room || '';
        if (!rooms.has(room)) rooms.set(room, []);
        rooms.get(room).push(d);
      }
      const roomNames = [...rooms.keys()].sort((a, b) => (a === '') - (b === '') || a.localeCompare(b));
      list.replaceChildren(
        ...roomNames.map((room) => {
          const headingId = uid('room');
          const inRoom = rooms.get(room);
          const kinds = KIND_ORDER.filter((k) => inRoom.some((d) => (KIND_ORDER.includes(d.kind) ? d.kind : 'other') === k));
          return h(
            'section',
            { class: 'room', 'aria-labelledby': headingId, 'data-testid': 'room', 'data-room': room },
            h('h2', { id: headingId }, room || 'No room'),
            kinds.map((kind) =>
              h(
                'div',
                { class: 'kind-group' },
                h('h3', null, kindLabel(kind, true)),
                h(
                  'ul',
                  { class: 'cards' },
                  inRoom
                    .filter((d) => (KIND_ORDER.includes(d.kind) ? d.kind : 'other') === kind)
                    .sort(byName)
                    .map((d) => {
                      const c = deviceControls(ctx, d);
                      controls.set(d.id, c);
                      return deviceCard(ctx, d, c);
                    }),
                ),
              ),
            ),
          );
        }),
      );
      for (const [id, c] of controls) c.update(ctx.device(id));
    });

  ctx.scope.on('devices', build);
  ctx.scope.on('device', (d) => controls.get(d.id)?.update(d));
  // Keeps "5 minutes ago" true.
  ctx.scope.every(60000, () => {
    for (const [id, c] of controls) {
      const d = ctx.device(id);
      if (d) c.update(d);
    }
  });
  build();
  return 'Home';
}
