// Integrations: the Home Assistant connection over hearth's own broker,
// Matter controllers (matter.js) and the voice assistants' relay (voice.js).
// Turning it on shows, once, what to enter into Home Assistant's MQTT
// integration; rotating and disconnecting ask first.

import { api } from './api.js';
import { busy, checkbox, confirmDialog, errorLine, h, uid } from './dom.js';
import { matterSection } from './matter.js';
import { voiceAssistants } from './voice.js';

function row(label, value, testid) {
  return [h('dt', null, label), h('dd', null, h('code', { class: 'secret', 'data-testid': testid }, String(value ?? '')))];
}

/** What to type into Home Assistant, shown once after enable or rotate. */
function connectionPanel(ctx, c, onDone) {
  const headingId = uid('ha-connection');
  const m = c?.mqtt ?? {};
  const heading = h('h3', { id: headingId, tabindex: -1 }, 'Enter these into Home Assistant');
  const panel = h(
    'div',
    { class: 'panel provisioning', role: 'group', 'aria-labelledby': headingId, 'data-testid': 'ha-connection' },
    heading,
    h('p', { class: 'once', 'data-testid': 'ha-once' }, h('strong', null, 'The password is shown once.'), ' hearth keeps only a hash of it. If you lose it, rotate it.'),
    h(
      'ol',
      { class: 'steps' },
      h('li', null, 'In Home Assistant, open Settings → Devices & services → Add integration → MQTT.'),
      h(
        'li',
        null,
        'Enter:',
        h(
          'dl',
          { class: 'kv' },
          row('Broker', m.host, 'ha-host'),
          row('Port', m.port, 'ha-port'),
          row('Username', m.username, 'ha-username'),
          row('Password', m.password, 'ha-password'),
        ),
      ),
      h(
        'li',
        null,
        'Under the advanced options, turn on TLS and upload hearth’s CA certificate: ',
        h('a', { href: '/ca.pem', download: 'hearth-ca.pem', 'data-testid': 'ha-ca' }, 'download ca.pem'),
        '. Leave the client ID empty.',
      ),
      h('li', null, 'Keep discovery on, with the prefix ', h('code', { 'data-testid': 'ha-prefix' }, String(c?.discovery_prefix ?? '')), '.'),
    ),
    h('div', { class: 'actions' }, h('button', { type: 'button', class: 'button primary', 'data-testid': 'ha-connection-done', on: { click: onDone } }, 'I have entered them')),
  );
  queueMicrotask(() => heading.focus());
  return panel;
}

function homeAssistant(ctx) {
  const body = h('div', null, h('p', null, 'Loading…'));
  const once = h('div');
  const section = h(
    'section',
    { class: 'panel', 'aria-labelledby': 'ha-heading', 'data-testid': 'ha-section' },
    h('h2', { id: 'ha-heading' }, 'Home Assistant'),
    h('p', null, 'Home Assistant connects to hearth’s own MQTT broker, on your LAN, and finds the devices you expose to it. It sees nothing else: no other device, and never a device’s own topics.'),
    body,
    once,
  );
  const error = errorLine('ha-error');

  const act = async (button, path, message) => {
    error.clear();
    button.disabled = true;
    try {
      const result = await api('POST', path);
      ctx.status(message);
      await load();
      return result;
    } catch (e) {
      error.set(e.message);
      return null;
    } finally {
      button.disabled = false;
    }
  };

  const showConnection = (c) => {
    if (!c) return;
    once.replaceChildren(connectionPanel(ctx, c, () => {
      once.replaceChildren();
      section.querySelector('h2').focus();
    }));
  };

  const settingsForm = (st) => {
    const share = checkbox(
      'Share device details (model, vendor, firmware) with Home Assistant',
      { checked: Boolean(st.settings?.share_device_details), 'data-testid': 'ha-share-details' },
      'Off by default. Home Assistant always gets the nickname and room of each device you expose.',
    );
    const selectId = uid('ha-format');
    const format = h(
      'select',
      { id: selectId, 'data-testid': 'ha-discovery' },
      h('option', { value: 'device', selected: !['component', 'legacy'].includes(st.settings?.discovery) }, 'Device-based (Home Assistant 2024.11 or later)'),
      h('option', { value: 'component', selected: st.settings?.discovery === 'component' }, 'Per entity (Home Assistant 2024.4 to 2024.10)'),
      h('option', { value: 'legacy', selected: st.settings?.discovery === 'legacy' }, 'Per entity, legacy (Home Assistant 2024.3 or older)'),
    );
    const form = h('form', { class: 'ha-settings', novalidate: true, 'data-testid': 'ha-settings' }, share.wrap, h('div', { class: 'field' }, h('label', { for: selectId }, 'Discovery format'), format));
    const save = async (change) => {
      error.clear();
      const done = busy(form);
      try {
        await api('PATCH', '/api/integrations/homeassistant', change);
        ctx.status('Saved. Home Assistant gets the new configuration now.');
      } catch (e) {
        error.set(e.message);
      } finally {
        done();
      }
    };
    share.input.addEventListener('change', () => save({ share_device_details: share.input.checked }));
    format.addEventListener('change', () => save({ discovery: format.value }));
    form.addEventListener('submit', (event) => event.preventDefault());
    return form;
  };

  const render = (st) => {
    const exposed = Number(st.exposed ?? 0);
    const devicesLine = h(
      'p',
      { 'data-testid': 'ha-exposed' },
      `${exposed} device${exposed === 1 ? '' : 's'} exposed. `,
      'Choose which on each device’s page (“Expose to Home Assistant”); every device starts hidden. ',
      h('a', { href: '#/home' }, 'Go to your devices'),
      '.',
    );
    if (!st.enabled) {
      const connect = h('button', { type: 'button', class: 'button primary', 'data-testid': 'ha-enable' }, 'Connect Home Assistant');
      connect.addEventListener('click', async () => showConnection(await act(connect, '/api/integrations/homeassistant/enable', 'Home Assistant can connect now.')));
      body.replaceChildren(
        h('p', { 'data-testid': 'ha-status', 'data-state': 'off' }, h('strong', null, 'Off. '), 'Home Assistant is told nothing.'),
        devicesLine,
        error.el,
        h('div', { class: 'actions' }, connect),
        settingsForm(st),
      );
      return;
    }
    const rotate = h('button', { type: 'button', class: 'button secondary', 'data-testid': 'ha-rotate' }, 'Rotate password');
    const disconnect = h('button', { type: 'button', class: 'button danger', 'data-testid': 'ha-disable' }, 'Disconnect');
    rotate.addEventListener('click', async () => {
      const ok = await confirmDialog({
        title: 'Rotate Home Assistant’s password?',
        body: [h('p', null, 'hearth makes a new password and refuses the old one at once. Home Assistant is disconnected until you give it the new password.')],
        confirm: 'Rotate password',
        testid: 'ha-rotate-dialog',
      });
      if (ok) showConnection(await act(rotate, '/api/integrations/homeassistant/rotate', 'New password made; the old one no longer works.'));
    });
    disconnect.addEventListener('click', async () => {
      const ok = await confirmDialog({
        title: 'Disconnect Home Assistant?',
        body: [h('p', null, 'Its password is revoked and its connection cut, and every device disappears from Home Assistant. You can connect it again later, with a new password.')],
        confirm: 'Disconnect',
        danger: true,
        testid: 'ha-disable-dialog',
      });
      if (ok) {
        once.replaceChildren();
        await act(disconnect, '/api/integrations/homeassistant/disable', 'Home Assistant is disconnected.');
      }
    });
    body.replaceChildren(
      h(
        'p',
        { 'data-testid': 'ha-status', 'data-state': 'on' },
        h('strong', null, 'On. '),
        st.connected ? 'Home Assistant is connected.' : 'Home Assistant is not connected right now.',
        ` Broker ${st.host}:${st.port}, user homeassistant.`,
      ),
      devicesLine,
      error.el,
      h('div', { class: 'actions' }, rotate, disconnect),
      settingsForm(st),
    );
  };

  const load = async () => {
    try {
      const st = await api('GET', '/api/integrations/homeassistant');
      if (ctx.scope.alive) render(st);
    } catch (e) {
      body.replaceChildren(h('p', { class: 'form-error' }, `Could not load: ${e.message}`));
    }
  };
  load();
  return section;
}

export function renderIntegrations(ctx) {
  ctx.main.append(
    h('h1', null, 'Integrations'),
    h('p', { class: 'lead' }, 'What else may talk to your devices. Each integration is off until you turn it on, and sees only the devices you choose.'),
    homeAssistant(ctx),
    matterSection(ctx),
    voiceAssistants(ctx),
  );
  return 'Integrations';
}
