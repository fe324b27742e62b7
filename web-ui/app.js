// The dashboard shell: session, hash routes, the live event stream, and the
// shared device list that the pages read. Pages get a `ctx` and never
// import this module, so there are no import cycles.

import { api, setCsrf, setUnauthorizedHandler } from './api.js';
import { h } from './dom.js';
import { renderLogin, renderSetup } from './auth.js';
import { renderHome } from './home.js';
import { renderDevice, renderDiscovered } from './devices.js';
import { renderSecurity } from './security.js';
import { renderPrivacy } from './privacy.js';
import { renderIntegrations } from './integrations.js';

const ROUTES = {
  home: renderHome,
  discovered: renderDiscovered,
  device: renderDevice,
  security: renderSecurity,
  privacy: renderPrivacy,
  integrations: renderIntegrations,
};

const state = {
  session: null,
  setupNeeded: false,
  devices: [],
  devicesLoaded: false,
};

// --- a tiny event bus; pages subscribe through their scope -------------

const listeners = new Map();

function on(type, fn) {
  if (!listeners.has(type)) listeners.set(type, new Set());
  listeners.get(type).add(fn);
  return () => listeners.get(type)?.delete(fn);
}

function emit(type, payload) {
  for (const fn of [...(listeners.get(type) ?? [])]) {
    try {
      fn(payload);
    } catch (error) {
      console.error(error);
    }
  }
}

/** What a rendered page owns; disposed when the page goes away. */
function newScope() {
  const cleanups = [];
  const scope = {
    alive: true,
    on(type, fn) {
      cleanups.push(on(type, fn));
    },
    every(ms, fn) {
      const timer = setInterval(fn, ms);
      cleanups.push(() => clearInterval(timer));
    },
    later(ms, fn) {
      const timer = setTimeout(fn, ms);
      cleanups.push(() => clearTimeout(timer));
    },
    dispose() {
      scope.alive = false;
      for (const c of cleanups.splice(0)) c();
    },
  };
  return scope;
}

// --- status messages (one polite live region for the whole page) --------
//
// A message belongs to the page it was said on: moving to another page
// clears it, unless it was said for the page that comes next (`carry`).

let statusTimer = null;
let statusCarried = false;

function status(text, kind = 'ok', { carry = false } = {}) {
  const region = document.getElementById('status');
  clearTimeout(statusTimer);
  region.textContent = '';
  region.dataset.kind = kind;
  statusCarried = carry;
  // A fresh text node in a later frame, so that the same message twice is
  // announced twice.
  requestAnimationFrame(() => {
    region.textContent = text;
  });
  statusTimer = setTimeout(() => {
    region.textContent = '';
  }, kind === 'error' ? 30000 : 15000);
}

/** On a new page: the last page's message goes, unless carried once. */
function clearStatus() {
  if (statusCarried) {
    statusCarried = false;
    return;
  }
  clearTimeout(statusTimer);
  const region = document.getElementById('status');
  region.textContent = '';
}

// --- devices and the live stream -----------------------------------------

let refreshing = null;
let refreshAgain = false;

async function refreshDevices() {
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    do {
      refreshAgain = false;
      try {
        const list = await api('GET', '/api/devices');
        state.devices = Array.isArray(list) ? list : [];
        state.devicesLoaded = true;
        updatePendingCount();
        emit('devices');
      } catch (error) {
        if (error.status !== 401) status(`Could not load the devices: ${error.message}`, 'error');
        return;
      }
    } while (refreshAgain && state.session);
  })();
  try {
    await refreshing;
  } finally {
    refreshing = null;
  }
}

const LIVE_FIELDS = ['online', 'power', 'brightness', 'color_temp', 'last_motion_at', 'last_press_at', 'open', 'water', 'temperature', 'humidity'];

function applyDeviceState(update) {
  const device = state.devices.find((d) => d.id === update?.id);
  if (!device) return;
  for (const key of LIVE_FIELDS) {
    if (key in update) device[key] = update[key];
  }
  emit('device', device);
}

let events = null;
let eventsRetry = null;
let eventsOpenedBefore = false;

function setLive(which) {
  const el = document.getElementById('live-status');
  el.dataset.state = which;
  el.textContent = { connecting: 'Connecting…', live: 'Live', paused: 'Live updates paused' }[which];
}

function startEvents() {
  stopEvents();
  const source = new EventSource('/api/events');
  events = source;
  setLive('connecting');
  source.addEventListener('open', () => {
    setLive('live');
    // Changes made while the stream was down are not replayed: fetch the
    // list again after every reconnect.
    if (eventsOpenedBefore) refreshDevices();
    eventsOpenedBefore = true;
  });
  source.addEventListener('device', (event) => {
    try {
      applyDeviceState(JSON.parse(event.data));
    } catch {
      // A malformed event changes nothing.
    }
  });
  source.addEventListener('devices', () => refreshDevices());
  source.addEventListener('error', () => {
    if (source.readyState === EventSource.CLOSED) {
      setLive('paused');
      scheduleReconnect();
    } else {
      setLive('connecting');
    }
  });
}

function scheduleReconnect() {
  clearTimeout(eventsRetry);
  eventsRetry = setTimeout(async () => {
    if (!state.session) return;
    try {
      await api('GET', '/api/session');
      startEvents();
    } catch (error) {
      if (error.status !== 401) scheduleReconnect();
    }
  }, 5000);
}

function stopEvents() {
  clearTimeout(eventsRetry);
  if (events) events.close();
  events = null;
}

function updatePendingCount() {
  const el = document.getElementById('pending-count');
  const n = state.devices.filter((d) => d.status === 'pending').length;
  el.hidden = n === 0;
  el.replaceChildren(String(n), h('span', { class: 'vh' }, ' waiting'));
}

// --- session -------------------------------------------------------------

/**
 * Starts a logged-in page. After a log-in, focus moves to the new page's
 * heading; on a page load (`quiet`) it stays at the top of the document.
 */
async function loggedIn(session, { quiet = false } = {}) {
  state.session = session;
  state.setupNeeded = false;
  setCsrf(session.csrf);
  eventsOpenedBefore = false;
  // Until a required password change is done, the API answers nothing
  // else: no device list, no live updates.
  if (!session.must_change_password) {
    startEvents();
    await refreshDevices();
  }
  const route = currentRoute();
  if (!route || !ROUTES[route.name]) history.replaceState(null, '', '#/home');
  render({ focus: !quiet });
}

function loggedOut(message) {
  state.session = null;
  state.devices = [];
  state.devicesLoaded = false;
  setCsrf(null);
  stopEvents();
  updatePendingCount();
  render();
  if (message) status(message);
}

setUnauthorizedHandler(() => {
  if (state.session) loggedOut('Your session has ended (it was logged out or revoked). Log in again.');
});

async function logout() {
  try {
    await api('POST', '/api/logout');
  } catch {
    // Whatever the server says, this page forgets the session.
  }
  // The next log-in starts at Home, not on the page this one ended on.
  history.replaceState(null, '', '#/home');
  if (state.session) loggedOut('You are logged out.');
}

// --- routing -------------------------------------------------------------

function currentRoute() {
  const hash = location.hash;
  if (!hash.startsWith('#/')) return null;
  const [name, ...rest] = hash.slice(2).split('/');
  let arg = null;
  if (rest.length) {
    try {
      arg = decodeURIComponent(rest.join('/'));
    } catch {
      arg = null;
    }
  }
  return { name, arg };
}

function navigate(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

let scope = null;

const ctx = {
  get session() {
    return state.session;
  },
  get devices() {
    return state.devices;
  },
  get devicesLoaded() {
    return state.devicesLoaded;
  },
  device(id) {
    return state.devices.find((d) => d.id === id) ?? null;
  },
  refreshDevices,
  status,
  navigate,
  loggedIn,
  logout,
  setSessionFlags(flags) {
    const wasRestricted = state.session.must_change_password;
    Object.assign(state.session, flags);
    if (wasRestricted && !state.session.must_change_password) {
      startEvents();
      refreshDevices();
    }
  },
};

function updateChrome(routeName) {
  const loggedInNow = Boolean(state.session);
  // A required password change closes every other page until it is done.
  const restricted = Boolean(state.session?.must_change_password);
  document.getElementById('nav').hidden = !loggedInNow || restricted;
  document.getElementById('live-status').hidden = restricted;
  document.getElementById('account').hidden = !loggedInNow;
  document.getElementById('who').textContent = state.session?.username ?? '';
  for (const link of document.querySelectorAll('#nav a[data-route]')) {
    if (loggedInNow && link.dataset.route === routeName) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

/**
 * Changes that lowered protection (the relay enabled, a device exposed, a
 * plaintext listener configured...): one line on every page, with a link
 * to the list on Security, until the owner acknowledges them. Security
 * announces every acknowledgement with a `hearth:warnings` event, and the
 * line follows it.
 */
function warningsSummary(pageCtx) {
  const box = h('div', { class: 'warnings-summary-slot' });
  const href = '#/security/warnings';
  const load = async () => {
    try {
      const list = await api('GET', '/api/warnings');
      if (!pageCtx.scope.alive) return;
      const n = Array.isArray(list) ? list.length : 0;
      if (!n) {
        box.replaceChildren();
        return;
      }
      const link = h(
        'a',
        { href, class: 'warnings-summary-link' },
        h('span', { class: 'warnings-summary-what' }, h('strong', null, String(n)), n === 1 ? ' change lowered protection' : ' changes lowered protection'),
        h('span', { class: 'warnings-summary-go' }, '\u00a0— Review'),
      );
      link.addEventListener('click', (event) => {
        // Already there: no hash change, so move to the list directly.
        const section = document.getElementById('warnings-section');
        if (location.hash === href && section) {
          event.preventDefault();
          section.scrollIntoView({ block: 'start' });
          section.focus();
        }
      });
      box.replaceChildren(h('p', { class: 'warnings-summary', 'data-testid': 'warnings-summary', 'data-count': String(n) }, h('span', { class: 'warnings-summary-mark', 'aria-hidden': 'true' }, '!'), link));
    } catch {
      // The page works without it.
    }
  };
  const changed = () => {
    if (!box.isConnected || !pageCtx.scope.alive) document.removeEventListener('hearth:warnings', changed);
    else load();
  };
  document.addEventListener('hearth:warnings', changed);
  load();
  return box;
}

let renderedHash = null;

function render({ focus = true } = {}) {
  scope?.dispose();
  scope = newScope();
  if (location.hash !== renderedHash) clearStatus();
  renderedHash = location.hash;
  const main = document.getElementById('main');
  main.replaceChildren();
  let title;
  let routeName = null;
  const pageCtx = Object.assign(Object.create(ctx), { scope, main });
  if (!state.session) {
    title = state.setupNeeded ? renderSetup(pageCtx) : renderLogin(pageCtx);
  } else {
    // A password change was required: only the Security page, until done.
    const route = state.session.must_change_password ? { name: 'security', arg: null } : (currentRoute() ?? { name: 'home', arg: null });
    const page = ROUTES[route.name];
    if (!page) {
      navigate('#/home');
      return;
    }
    routeName = route.name === 'device' ? 'home' : route.name;
    title = page(pageCtx, route.arg);
    if (state.session.must_change_password) {
      main.prepend(h('section', { class: 'panel warnings', role: 'alert', 'data-testid': 'must-change-password' }, h('h2', null, 'Change your password'), h('p', null, 'A password change was required at this login. Choose a new password below; the rest of the dashboard opens once it is changed.')));
    } else {
      main.prepend(warningsSummary(pageCtx));
    }
  }
  updateChrome(routeName);
  document.title = `${title} · hearth`;
  if (focus) {
    const heading = main.querySelector('h1');
    if (heading) {
      heading.tabIndex = -1;
      heading.focus();
    }
  }
}

function showFatal(error) {
  const main = document.getElementById('main');
  main.replaceChildren(
    h('h1', null, 'hearth cannot be reached'),
    h('p', { class: 'form-error', role: 'alert', 'data-testid': 'fatal' }, error.message),
    h('button', { type: 'button', class: 'button primary', on: { click: () => boot() } }, 'Try again'),
  );
}

async function boot() {
  try {
    // Both at once: a returning owner's page waits for one round trip, not
    // two.
    const [s, session] = await Promise.all([
      api('GET', '/api/state'),
      api('GET', '/api/session').catch((error) => {
        if (error.status === 401) return null;
        throw error;
      }),
    ]);
    state.setupNeeded = Boolean(s?.setup_needed);
    if (!state.setupNeeded && session) {
      await loggedIn(session, { quiet: true });
      return;
    }
    render({ focus: false });
  } catch (error) {
    showFatal(error);
  }
}

window.addEventListener('hashchange', () => {
  // In-page anchors (the skip link) are not routes.
  if (currentRoute()) render();
});

document.getElementById('logout').addEventListener('click', logout);
// The header stays at the top: what sticks below it, and where a focused
// heading scrolls to, follow its height (it wraps on a phone).
new ResizeObserver(([entry]) => {
  document.documentElement.style.setProperty('--header-h', `${Math.ceil(entry.borderBoxSize?.[0]?.blockSize ?? entry.target.offsetHeight)}px`);
}).observe(document.querySelector('.topbar'));
document.getElementById('skip-link').addEventListener('click', (event) => {
  event.preventDefault();
  document.getElementById('main').focus();
});

boot();
