// Matter, on the Integrations page: pairing a controller (Apple Home,
// Google Home, Alexa, Home Assistant) with the QR code and the manual code,
// shown only while the owner has pairing open, and the controllers that
// joined, each removable. Off, it says how to turn it on.

import { api } from './api.js';
import { ago, confirmDialog, errorLine, h, timeEl } from './dom.js';

/** How often the page asks whether pairing is still open. */
const POLL_MS = 2000;

function countdownText(secs) {
  const s = Math.max(0, Math.round(secs));
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, '0')}`;
}

function plural(n, noun) {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** A controller's row: its label, vendor, when it joined, and Remove. */
function controllerRow(ctx, c, reload) {
  const label = c.label ? c.label : 'Unnamed controller';
  const vendor = c.vendor ?? `vendor 0x${Number(c.vendor_id ?? 0).toString(16).padStart(4, '0')}`;
  const error = errorLine('matter-controller-error');
  const remove = h('button', { type: 'button', class: 'button danger', 'data-testid': 'matter-controller-remove' }, 'Remove');
  remove.addEventListener('click', async () => {
    const ok = await confirmDialog({
      title: `Remove ${label}?`,
      body: [h('p', null, 'It can no longer reach hearth, and its devices disappear from its app. To bring it back, pair it again.')],
      confirm: 'Remove',
      danger: true,
      testid: 'matter-remove-dialog',
    });
    if (!ok) return;
    error.clear();
    remove.disabled = true;
    try {
      await api('DELETE', `/api/matter/fabrics/${encodeURIComponent(c.index)}`);
      ctx.status(`${label} is removed.`);
      await reload();
    } catch (e) {
      error.set(e.message);
      remove.disabled = false;
    }
  });
  const added = timeEl(c.added);
  return h(
    'li',
    { class: 'row', 'data-testid': 'matter-controller' },
    h(
      'div',
      null,
      h('strong', { 'data-testid': 'matter-controller-label' }, label),
      h('br'),
      h('span', { class: 'hint' }, vendor, ', ', added ? ['added ', h('span', { title: added.title }, ago(c.added)), h('span', { class: 'vh' }, ' (', added, ')')] : 'added before hearth kept dates'),
    ),
    h('div', { class: 'matter-remove' }, remove, error.el),
  );
}

export function matterSection(ctx) {
  const body = h('div', null, h('p', null, 'Loading…'));
  const controllers = h('div', { 'data-testid': 'matter-controllers-box' });
  const notice = h('p', { class: 'notice', 'data-testid': 'matter-notice', hidden: true });
  const section = h(
    'section',
    { class: 'panel', 'aria-labelledby': 'matter-heading', 'data-testid': 'matter-section' },
    h('h2', { id: 'matter-heading' }, 'Matter'),
    h('p', null, 'Matter lets Apple Home, Google Home, Alexa or Home Assistant control your lights and plugs through hearth, on your LAN and without a cloud.'),
    notice,
    body,
    controllers,
  );
  const error = errorLine('matter-error');

  // What the page last saw, for the countdown and to tell how pairing
  // closed: by the owner, by a controller joining, or by the clock.
  let open = false;
  let deadline = 0;
  let countAtOpen = 0;
  let stoppedHere = false;
  let countdown = null;
  let stateLine = null;

  const say = (text) => {
    notice.textContent = text;
    notice.hidden = !text;
  };

  const loadControllers = async () => {
    try {
      const { controllers: list } = await api('GET', '/api/matter/fabrics');
      if (!ctx.scope.alive) return;
      controllers.replaceChildren(
        h('h3', null, 'Controllers'),
        list.length
          ? h('ul', { class: 'rows', 'data-testid': 'matter-controllers' }, list.map((c) => controllerRow(ctx, c, load)))
          : h('p', { 'data-testid': 'matter-no-controllers' }, 'No controller has joined yet.'),
      );
    } catch (e) {
      controllers.replaceChildren(h('p', { class: 'form-error' }, `Could not load the controllers: ${e.message}`));
    }
  };

  const act = async (button, method, message) => {
    error.clear();
    button.disabled = true;
    try {
      const st = await api(method, '/api/matter/pairing');
      ctx.status(message);
      if (ctx.scope.alive) render(st);
    } catch (e) {
      error.set(e.message);
      button.disabled = false;
    }
  };

  const pairingPanel = (st) => {
    const p = st.pairing;
    const copy = h('button', { type: 'button', class: 'button secondary', 'data-testid': 'matter-copy' }, 'Copy code');
    const code = h('code', { class: 'matter-code', 'data-testid': 'matter-code' }, p.manual_code_pretty);
    copy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(p.manual_code);
        ctx.status('Copied the setup code.');
      } catch {
        const range = document.createRange();
        range.selectNodeContents(code);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        ctx.status('The browser did not allow copying. The code is selected: press Ctrl+C (or ⌘C) to copy it.', 'error');
      }
    });
    const stop = h('button', { type: 'button', class: 'button secondary', 'data-testid': 'matter-stop' }, 'Stop pairing');
    stop.addEventListener('click', () => {
      stoppedHere = true;
      act(stop, 'DELETE', 'Pairing is closed.');
    });
    countdown = h('strong', { 'data-testid': 'matter-countdown' }, countdownText((deadline - Date.now()) / 1000));
    return h(
      'div',
      { class: 'panel provisioning matter-pairing', role: 'group', 'aria-labelledby': 'matter-pairing-heading', 'data-testid': 'matter-pairing' },
      h('h3', { id: 'matter-pairing-heading' }, 'Pairing is open'),
      h('p', null, 'Pairing closes in ', countdown, ', or as soon as a controller joins.'),
      h(
        'ol',
        { class: 'steps' },
        h(
          'li',
          null,
          h('p', null, 'In your controller’s app, add a Matter device and scan this code:'),
          h('img', {
            class: 'qr',
            src: `${p.qr_svg}?t=${Date.now()}`,
            alt: 'QR code that pairs hearth with a Matter controller. If you cannot scan it, type the setup code shown in the next step.',
            width: 240,
            height: 240,
            'data-testid': 'matter-qr',
          }),
        ),
        h('li', null, h('p', null, 'Or type this setup code:'), h('p', { class: 'matter-code-line' }, code, copy)),
        h('li', null, h('p', null, 'The app warns that the bridge is not certified: hearth is not, yet. Add it anyway, then choose the devices’ rooms in the app.')),
      ),
      h('div', { class: 'actions' }, stop),
    );
  };

  const render = (st) => {
    if (!st.enabled) {
      open = false;
      body.replaceChildren(
        h('p', { 'data-testid': 'matter-status', 'data-state': 'off' }, h('strong', null, 'Off. '), 'No controller can find or reach hearth.'),
        h('p', { 'data-testid': 'matter-how' }, 'To turn it on: ', st.how_to_enable),
      );
      controllers.replaceChildren();
      return;
    }
    const wasOpen = open;
    open = Boolean(st.pairing?.open);
    const count = Number(st.controllers ?? 0);
    if (open) {
      deadline = Date.now() + Number(st.pairing.closes_in_secs ?? st.window_secs ?? 0) * 1000;
      if (!wasOpen) {
        countAtOpen = count;
        stoppedHere = false;
        say('');
      }
    } else if (wasOpen && !stoppedHere) {
      let why = 'Pairing was closed elsewhere (from the command line or another browser).';
      if (count > countAtOpen) why = 'A controller joined. Pairing is closed.';
      else if (Date.now() > deadline - 5000) why = 'Pairing closed: the 15 minutes ran out.';
      say(why);
      ctx.status(why);
    }
    const state = h(
      'p',
      { 'data-testid': 'matter-status', 'data-state': open ? 'pairing' : 'on' },
      h('strong', null, 'On. '),
      `${plural(count, 'controller')} paired, ${plural(Number(st.bridged ?? 0), 'device')} shown to them. UDP port ${st.port}.`,
    );
    // Still open: the panel stays as it is (the QR image is not fetched
    // again, focus stays put); only the counts and the deadline move.
    if (open && wasOpen && stateLine?.isConnected) {
      stateLine.replaceWith(state);
      stateLine = state;
      return;
    }
    stateLine = state;
    if (open) {
      body.replaceChildren(state, error.el, pairingPanel(st));
    } else {
      countdown = null;
      const pair = h('button', { type: 'button', class: 'button primary', 'data-testid': 'matter-pair' }, 'Pair a controller');
      pair.addEventListener('click', () => act(pair, 'POST', 'Pairing is open for 15 minutes.'));
      body.replaceChildren(
        state,
        h('p', { class: 'hint' }, 'Pairing opens for 15 minutes, or until a controller joins, and shows the code to scan.'),
        error.el,
        h('div', { class: 'actions' }, pair),
      );
    }
    if (wasOpen !== open || !controllers.hasChildNodes()) loadControllers();
  };

  const load = async () => {
    try {
      const st = await api('GET', '/api/matter');
      if (ctx.scope.alive) render(st);
    } catch (e) {
      body.replaceChildren(h('p', { class: 'form-error' }, `Could not load: ${e.message}`));
    }
  };

  ctx.scope.every(1000, () => {
    if (!open || !countdown) return;
    const left = (deadline - Date.now()) / 1000;
    countdown.textContent = countdownText(left);
  });
  ctx.scope.every(POLL_MS, () => {
    if (open) load();
  });
  load();
  return section;
}
