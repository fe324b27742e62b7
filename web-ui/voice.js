// Voice assistants: the relay's listener, the assistants registered with
// it (each client secret shown once), and the account links, each
// revocable at once.

import { api } from './api.js';
import { busy, confirmDialog, errorLine, field, h, timeEl, uid } from './dom.js';

const ACTION_NAMES = { power: 'on/off', brightness: 'brightness', color_temp: 'colour temperature' };

/** The client id and secret, shown once after registration. */
function secretPanel(c, onDone) {
  const headingId = uid('relay-secret');
  const heading = h('h3', { id: headingId, tabindex: -1 }, 'Enter these into the assistant’s console');
  const row = (label, value, testid) => [h('dt', null, label), h('dd', null, h('code', { class: 'secret', 'data-testid': testid }, String(value ?? '')))];
  const panel = h(
    'div',
    { class: 'provisioning', role: 'group', 'aria-labelledby': headingId, 'data-testid': 'relay-client-secret-panel' },
    heading,
    h('p', { class: 'once' }, h('strong', null, 'The client secret is shown once.'), ' hearth keeps only a hash of it. If you lose it, delete the assistant and register it again.'),
    h(
      'dl',
      { class: 'kv' },
      row('Client id', c.client_id, 'relay-client-id'),
      row('Client secret', c.client_secret, 'relay-client-secret'),
      row('Authorization URL', `https://<your public name>${c.authorize_path}`, 'relay-authorize-path'),
      row('Token URL', `https://<your public name>${c.token_path}`, 'relay-token-path'),
    ),
    h('div', { class: 'actions' }, h('button', { type: 'button', class: 'button primary', 'data-testid': 'relay-secret-done', on: { click: onDone } }, 'I have entered them')),
  );
  queueMicrotask(() => heading.focus());
  return panel;
}

function registerForm(st, onRegistered, error) {
  const name = field('Name', { maxlength: 64, required: true, autocomplete: 'off', 'data-testid': 'relay-client-name' }, 'Your label for it, such as “Alexa”.');
  const selectId = uid('relay-assistant');
  const assistant = h(
    'select',
    { id: selectId, 'data-testid': 'relay-client-assistant' },
    h('option', { value: 'alexa' }, 'Amazon Alexa'),
    h('option', { value: 'google' }, 'Google Home'),
  );
  const vendor = field('Alexa vendor id or Google project id', { autocomplete: 'off', 'data-testid': 'relay-client-vendor' }, 'Fills in the assistant’s own redirect URIs below.');
  const urisId = uid('relay-uris');
  const uris = h('textarea', { id: urisId, rows: 4, 'data-testid': 'relay-client-uris', spellcheck: 'false' });
  const fill = () => {
    const templates = st.redirect_templates?.[assistant.value];
    const id = vendor.input.value.trim();
    if (templates && id) uris.value = templates.map((t) => t.replace('{id}', id)).join('\n');
  };
  assistant.addEventListener('change', fill);
  vendor.input.addEventListener('input', fill);
  const submit = h('button', { type: 'submit', class: 'button primary', 'data-testid': 'relay-client-register' }, 'Register');
  const form = h(
    'form',
    { class: 'relay-register', novalidate: true, 'data-testid': 'relay-register' },
    h('h3', null, 'Register an assistant'),
    name.wrap,
    h('div', { class: 'field' }, h('label', { for: selectId }, 'Assistant'), assistant),
    vendor.wrap,
    h('div', { class: 'field' }, h('label', { for: urisId }, 'Redirect URIs, one per line (https only, compared exactly)'), uris),
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.clear();
    const done = busy(form);
    try {
      const c = await api('POST', '/api/relay/clients', {
        name: name.input.value.trim(),
        assistant: assistant.value,
        redirect_uris: uris.value.split('\n').map((u) => u.trim()).filter(Boolean),
      });
      form.reset();
      onRegistered(c);
    } catch (e) {
      error.set(e.message);
    } finally {
      done();
    }
  });
  return form;
}

/** Where the relay listens, or will: a port of 0 is chosen when it starts. */
function relayAddress(st) {
  if (st.listening) return st.listening;
  const m = /^(.*):0$/.exec(st.listen ?? '');
  return m ? `${m[1]} (a free port, chosen when it starts)` : st.listen;
}

export function voiceAssistants(ctx) {
  const body = h('div', null, h('p', null, 'Loading…'));
  const once = h('div');
  const error = errorLine('relay-page-error');
  const section = h(
    'section',
    { class: 'panel', 'aria-labelledby': 'relay-heading', 'data-testid': 'relay-section' },
    h('h2', { id: 'relay-heading', tabindex: -1 }, 'Voice assistants'),
    h(
      'p',
      null,
      'The voice relay lets Alexa or Google Home reach the lights and plugs you choose, by their voice names: never a camera, nickname, room, model or address. ',
      'It is the only part of hearth meant to be reached from outside your home, so only you turn it on, and it stays off until you do.',
    ),
    body,
    once,
  );

  const post = async (button, method, path, message) => {
    error.clear();
    if (button) button.disabled = true;
    try {
      await api(method, path);
      ctx.status(message);
      await load();
    } catch (e) {
      error.set(e.message);
    } finally {
      if (button) button.disabled = false;
    }
  };

  const render = (st) => {
    const state = st.listening
      ? h('p', { 'data-testid': 'relay-status', 'data-state': 'on' }, h('strong', null, 'On. '), `Listening on ${st.listening}${st.tls ? ' over TLS' : ' (plain HTTP)'}.`)
      : h('p', { 'data-testid': 'relay-status', 'data-state': 'off' }, h('strong', null, 'Off. '), 'Nothing listens; links are kept for when you turn it on.');
    const where = h(
      'p',
      { class: 'hint' },
      st.tls
        ? 'It serves TLS with the certificate you configured.'
        : `It speaks plain HTTP on ${relayAddress(st)}, for your tunnel or reverse proxy, which must hold a publicly trusted certificate (Alexa requires one from a CA Amazon accepts). `,
      'Linking needs your password and a two-factor code.',
    );
    const toggle = st.enabled
      ? h('button', { type: 'button', class: 'button secondary', 'data-testid': 'relay-disable' }, 'Disable')
      : h('button', { type: 'button', class: 'button primary', 'data-testid': 'relay-enable' }, 'Enable');
    toggle.addEventListener('click', () =>
      st.enabled
        ? post(toggle, 'POST', '/api/relay/disable', 'The voice relay is off; nothing listens.')
        : post(toggle, 'POST', '/api/relay/enable', 'The voice relay is listening.'),
    );

    const offered = Number(st.offerable_devices ?? 0);
    const devicesLine = h(
      'p',
      { 'data-testid': 'relay-offerable' },
      `${offered} device${offered === 1 ? '' : 's'} can be offered to an assistant. `,
      'Give a light or plug a voice name and turn on “Expose to voice assistants” on its page. ',
      h('a', { href: '#/home' }, 'Go to your devices'),
      '.',
    );

    const clients = h(
      'ul',
      { class: 'relay-clients', 'data-testid': 'relay-clients' },
      (st.clients ?? []).map((c) => {
        const del = h('button', { type: 'button', class: 'button danger', 'data-testid': 'relay-client-delete' }, 'Delete');
        del.addEventListener('click', async () => {
          const ok = await confirmDialog({
            title: `Delete ${c.name}?`,
            body: [h('p', null, 'Its client secret stops working, and every link made through it is revoked at once.')],
            confirm: 'Delete',
            danger: true,
            testid: 'relay-client-delete-dialog',
          });
          if (ok) await post(del, 'DELETE', `/api/relay/clients/${encodeURIComponent(c.id)}`, `${c.name} is deleted.`);
        });
        return h(
          'li',
          { 'data-testid': 'relay-client' },
          h('strong', null, c.name),
          ` (${c.assistant}), registered `,
          timeEl(c.created_at),
          h('br'),
          'Client id ',
          h('code', null, c.id),
          h('ul', { class: 'hint' }, (c.redirect_uris ?? []).map((u) => h('li', null, h('code', null, u)))),
          del,
        );
      }),
    );

    const links = h(
      'ul',
      { class: 'relay-links', 'data-testid': 'relay-links' },
      (st.links ?? []).map((l) => {
        const revoke = h('button', { type: 'button', class: 'button danger', 'data-testid': 'relay-link-revoke' }, 'Revoke');
        revoke.addEventListener('click', async () => {
          const ok = await confirmDialog({
            title: `Revoke this link of ${l.client_name}?`,
            body: [h('p', null, 'Its tokens stop working at once. The assistant must be linked again to reach any device.')],
            confirm: 'Revoke',
            danger: true,
            testid: 'relay-link-revoke-dialog',
          });
          if (ok) await post(revoke, 'DELETE', `/api/relay/links/${encodeURIComponent(l.id)}`, 'The link is revoked.');
        });
        const names = (l.devices ?? []).map((d) => d.voice_name ?? 'a device no longer offered');
        return h(
          'li',
          { 'data-testid': 'relay-link' },
          h('strong', null, l.client_name),
          ', linked ',
          timeEl(l.created_at),
          h('br'),
          `Devices: ${names.length ? names.join(', ') : 'none'}. `,
          `May: ${(l.actions ?? []).map((a) => ACTION_NAMES[a] ?? a).join(', ')}. `,
          h('span', { 'data-testid': 'relay-link-calls' }, `${l.calls} call${l.calls === 1 ? '' : 's'}.`),
          ' ',
          revoke,
        );
      }),
    );

    body.replaceChildren(
      state,
      where,
      error.el,
      h('div', { class: 'actions' }, toggle),
      devicesLine,
      h('h3', null, 'Assistants'),
      (st.clients ?? []).length ? clients : h('p', null, 'None registered.'),
      registerForm(st, (c) => {
        once.replaceChildren(secretPanel(c, () => {
          once.replaceChildren();
          section.querySelector('h2').focus();
        }));
        ctx.status('Registered. Its secret is shown once below.');
        load();
      }, error),
      h('h3', null, 'Links'),
      (st.links ?? []).length ? links : h('p', { 'data-testid': 'relay-no-links' }, 'No assistant is linked.'),
    );
  };

  const load = async () => {
    try {
      const st = await api('GET', '/api/relay');
      if (ctx.scope.alive) render(st);
    } catch (e) {
      body.replaceChildren(h('p', { class: 'form-error' }, `Could not load: ${e.message}`));
    }
  };
  load();
  return section;
}
