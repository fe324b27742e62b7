// Home: the adopted devices as tiles, grouped by room (or one room at a
// time), each with its state at a glance and its controls.

import { api } from './api.js';
import { ago, append, deviceName, dims, h, isLight, keepFocus, kindLabel, sensesMotion, timeEl, uid } from './dom.js';

const KIND_ORDER = ['bulb', 'light_strip', 'plug', 'camera', 'doorbell', 'motion_sensor', 'contact_sensor', 'climate_sensor', 'water_sensor', 'other'];
// How long a command may wait for the device to report its new state
// before the tile says it did not answer.
const CONFIRM_MS = 10000;
// hearth's colour temperature range, in mireds (home/vendor.rs), shown in
// kelvin: 2,000 K is 500 mireds, 6,500 K about 153.
const KELVIN_MIN = 2000;
const KELVIN_MAX = 6500;
const toMireds = (k) => Math.min(500, Math.max(153, Math.round(1e6 / k)));
const toKelvin = (m) => Math.round(1e6 / m / 100) * 100;

const known = (v) => v !== null && v !== undefined;

/** Whether a light has shown it takes a colour temperature. */
const warmCool = (d) => dims(d) && (Boolean(d.learnt?.color_temp) || known(d.color_temp));

/**
 * The live part of a device: online state, its controls (power, brightness
 * and colour temperature for lights), last motion or its reading, and an
 * error line under them for what a control could not do. Returns the
 * element and an update(device) to apply live state in place.
 */
export function deviceControls(ctx, device) {
  const id = device.id;
  const name = () => deviceName(ctx.device(id) ?? device);
  let current = device;
  let pendingPower = null;
  let sliderTouched = 0;
  let warmthTouched = 0;

  const online = h('span', { class: 'badge', 'data-testid': 'device-online' });
  const parts = [online];

  // What went wrong, next to the control that caused it.
  const error = h('p', { class: 'control-error', role: 'alert', 'data-testid': 'control-error' });
  const failed = (text) => {
    error.textContent = text;
  };

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
        failed(`${name()} has not confirmed turning ${want ? 'on' : 'off'}. It may be offline.`);
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
    parts.push(h('div', { class: 'control slider' }, h('label', { for: sliderId }, 'Brightness', sliderName), output, slider));
  }

  let warmth = null;
  let warmthOut = null;
  let warmthName = null;
  let warmthRow = null;
  if (dims(device)) {
    const warmthId = uid('warmth');
    warmth = h('input', { type: 'range', id: warmthId, min: KELVIN_MIN, max: KELVIN_MAX, step: 100, value: 2700, 'data-testid': 'color-temp', 'data-focus-key': `warmth-${id}` });
    warmthOut = h('output', { for: warmthId, class: 'brightness-value', 'data-testid': 'color-temp-value' });
    warmthName = h('span', { class: 'vh' });
    warmth.addEventListener('input', () => {
      warmthTouched = Date.now();
      warmthOut.textContent = `${warmth.value} K`;
    });
    warmth.addEventListener('change', () => {
      warmthTouched = Date.now();
      send({ color_temp: toMireds(Number(warmth.value)) });
    });
    warmthRow = h('div', { class: 'control slider warmth', hidden: true }, h('label', { for: warmthId }, 'Warmth', warmthName), warmthOut, warmth);
    parts.push(warmthRow);
  }

  let motion = null;
  if (sensesMotion(device)) {
    motion = h('p', { class: 'motion', 'data-testid': 'last-motion' });
    parts.push(motion);
  }

  let press = null;
  if (device.kind === 'doorbell') {
    press = h('p', { class: 'motion', 'data-testid': 'last-press' });
    parts.push(press);
  }

  const readingOf = READINGS[device.kind];
  let reading = null;
  if (readingOf) {
    reading = h('p', { class: 'reading', 'data-testid': 'reading' });
    parts.push(reading);
  }
  parts.push(error);

  async function send(body) {
    error.textContent = '';
    try {
      await api('POST', `/api/devices/${encodeURIComponent(id)}/command`, body);
      return true;
    } catch (e) {
      failed(`Not sent: ${e.message}`);
      return false;
    }
  }

  const el = h('div', { class: 'controls' }, parts);

  function update(d) {
    current = d;
    const label = deviceName(d);
    const tile = el.closest('.tile');
    tile?.classList.toggle('offline', !d.online);
    if (tile) tile.dataset.power = d.power === true ? 'on' : d.power === false ? 'off' : 'unknown';
    online.dataset.state = d.online ? 'online' : 'offline';
    online.textContent = d.online ? 'Online' : 'Offline';
    if (toggle) {
      if (pendingPower && d.power === pendingPower.want) {
        pendingPower = null;
        error.textContent = '';
      }
      toggleName.textContent = `: ${label}`;
      toggle.setAttribute('aria-pressed', d.power === true ? 'true' : 'false');
      const state = d.power === null || d.power === undefined ? 'Unknown' : d.power ? 'On' : 'Off';
      powerText.textContent = pendingPower ? `Turning ${pendingPower.want ? 'on' : 'off'}…` : state;
      powerText.dataset.state = d.power === true ? 'on' : d.power === false ? 'off' : 'unknown';
    }
    if (slider) {
      sliderName.textContent = ` of ${label}`;
      const busyHere = document.activeElement === slider && Date.now() - sliderTouched < 3000;
      if (!busyHere && typeof d.brightness === 'number') slider.value = String(d.brightness);
      output.textContent = typeof d.brightness === 'number' || busyHere ? `${slider.value}%` : 'unknown';
    }
    if (warmth) {
      warmthRow.hidden = !warmCool(d);
      warmthName.textContent = ` of ${label}`;
      const busyHere = document.activeElement === warmth && Date.now() - warmthTouched < 3000;
      if (!busyHere && typeof d.color_temp === 'number') warmth.value = String(toKelvin(d.color_temp));
      warmthOut.textContent = typeof d.color_temp === 'number' || busyHere ? `${warmth.value} K` : 'unknown';
    }
    if (reading) reading.textContent = readingOf(d);
    if (press) {
      const t = timeEl(d.last_press_at);
      press.replaceChildren(...(t ? ['Rang ', ago(d.last_press_at), ' ', h('span', { class: 'vh' }, '(', t, ')')] : ['Not rung yet']));
      if (t) press.title = t.title;
    }
    if (motion) {
      const t = timeEl(d.last_motion_at);
      motion.replaceChildren(...(t ? ['Motion ', ago(d.last_motion_at), ' ', h('span', { class: 'vh' }, '(', t, ')')] : ['No motion seen yet']));
      if (t) motion.title = t.title;
    }
  }

  return { el, update, online };
}

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

const kindOf = (d) => (KIND_ORDER.includes(d.kind) ? d.kind : 'other');

/** Lights first, then cameras, then sensors; by name within a kind. */
function tileOrder(a, b) {
  return (
    KIND_ORDER.indexOf(kindOf(a)) - KIND_ORDER.indexOf(kindOf(b)) ||
    deviceName(a).localeCompare(deviceName(b)) ||
    a.id.localeCompare(b.id)
  );
}

function deviceTile(device, controls) {
  const tile = h(
    'li',
    { class: 'tile', 'data-testid': 'device-tile', 'data-device-id': device.id, 'data-kind': device.kind },
    h(
      'div',
      { class: 'tile-head' },
      h('span', { class: 'tile-icon', 'data-kind': kindOf(device), 'aria-hidden': 'true' }),
      h(
        'h3',
        { class: 'tile-name' },
        h('a', { href: `#/device/${encodeURIComponent(device.id)}`, 'data-testid': 'device-link', 'data-focus-key': `link-${device.id}` }, deviceName(device)),
      ),
    ),
    // Its kind and whether it is online, on one line under its name.
    h('p', { class: 'tile-kind' }, kindLabel(device.kind), ' ', controls.online),
    controls.el,
  );
  controls.update(device);
  return tile;
}

// The room shown, kept while the page is open (not stored: room names are
// the owner's).
let roomShown = null;

export function renderHome(ctx) {
  const nag = ctx.session.totp_enabled
    ? null
    : h(
        'p',
        { class: 'notice compact', 'data-testid': 'totp-nag' },
        'Two-factor authentication is off. ',
        h('a', { href: '#/security' }, 'Turn it on'),
      );
  const pendingNote = h('p', { class: 'notice compact', 'data-testid': 'pending-note', hidden: true });
  const filter = h('div', { class: 'chips', role: 'group', 'aria-label': 'Show a room', 'data-testid': 'room-filter', hidden: true });
  const list = h('div', { class: 'rooms', 'data-testid': 'home-devices' });
  append(ctx.main, [h('div', { class: 'page-head' }, h('h1', null, 'Home'), filter), nag, pendingNote, list]);

  const controls = new Map();

  const build = () =>
    keepFocus(() => {
      controls.clear();
      const pending = ctx.devices.filter((d) => d.status === 'pending').length;
      pendingNote.hidden = pending === 0;
      pendingNote.replaceChildren(
        h('a', { href: '#/discovered' }, `${pending} new device${pending === 1 ? '' : 's'} found`),
        ` ${pending === 1 ? 'waits' : 'wait'} for you to adopt or ignore ${pending === 1 ? 'it' : 'them'}.`,
      );
      if (!ctx.devicesLoaded) {
        list.replaceChildren(h('p', null, 'Loading devices…'));
        return;
      }
      const adopted = ctx.devices.filter((d) => d.status === 'adopted');
      if (adopted.length === 0) {
        filter.hidden = true;
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
      if (roomShown !== null && !rooms.has(roomShown)) roomShown = null;

      // One chip per room, and All; only when there is more than one room.
      filter.hidden = roomNames.length < 2;
      const chip = (room, label, count) =>
        h(
          'button',
          {
            type: 'button',
            class: 'chip',
            'aria-pressed': String(roomShown === room),
            'data-testid': 'room-chip',
            'data-focus-key': `room-${room ?? '*'}`,
            on: {
              click: () => {
                roomShown = room;
                build();
              },
            },
          },
          label,
          h('span', { class: 'chip-count' }, ` ${count}`),
        );
      filter.replaceChildren(chip(null, 'All', adopted.length), ...roomNames.map((r) => chip(r, r || 'No room', rooms.get(r).length)));

      const shown = roomShown === null ? roomNames : [roomShown];
      list.replaceChildren(
        ...shown.map((room) => {
          const headingId = uid('room');
          const section = h(
            'section',
            { class: 'room', 'aria-labelledby': headingId, 'data-testid': 'room', 'data-room': room },
            h('h2', { id: headingId, class: 'room-name' }, room || 'No room'),
            h(
              'ul',
              { class: 'tiles' },
              [...rooms.get(room)].sort(tileOrder).map((d) => {
                const c = deviceControls(ctx, d);
                controls.set(d.id, c);
                return deviceTile(d, c);
              }),
            ),
          );
          // A room is as wide as its tiles, up to four: small rooms sit side
          // by side on a wide screen. (Set through the CSSOM: the page's
          // CSP allows no style attributes.)
          section.style.setProperty('--tiles', String(Math.min(4, rooms.get(room).length)));
          return section;
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
