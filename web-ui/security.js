// Security: the standing warnings, two-factor enrolment, password change,
// sessions, "log everyone out", and the recent audit events with the chain
// check.

import { api, download } from './api.js';
import { ago, busy, checkbox, confirmDialog, errorLine, field, h, timeEl } from './dom.js';
import { PASSWORD_POLICY } from './auth.js';

function section(id, title, testid, ...children) {
  return h('section', { class: 'panel', 'aria-labelledby': id, 'data-testid': testid }, h('h2', { id }, title), children);
}

// --- standing warnings --------------------------------------------------------

const WARNING_GROUPS = [
  ['exposed_homeassistant', 'Devices exposed to Home Assistant'],
  ['exposed_voice', 'Devices exposed to voice assistants'],
  ['relay', 'The voice relay'],
  ['homeassistant', 'Home Assistant'],
  ['configuration', 'Configuration'],
  ['dns_cloud', 'Devices reaching a cloud'],
  ['other', 'Other changes'],
];

// Tells the one-line summary at the top of every page to count again.
function warningsChanged() {
  document.dispatchEvent(new CustomEvent('hearth:warnings'));
}

function warnings(ctx, { focus = false } = {}) {
  const list = h('div', { 'data-testid': 'warnings-list', 'aria-busy': 'true' }, h('p', null, 'Loading…'));
  const note = h('p', { role: 'status', 'data-testid': 'warnings-status' });
  const ackAll = h('button', { type: 'button', class: 'button primary', 'data-testid': 'warnings-ack-all', hidden: true }, 'Acknowledge all');
  const why = h('p', { class: 'hint', hidden: true }, 'Each of these made your home reachable in a new way. Check that each was yours, then acknowledge it: it stays in the audit log below.');
  const el = h(
    'section',
    { class: 'panel', id: 'warnings-section', tabindex: -1, 'aria-labelledby': 'warnings-heading', 'data-testid': 'warnings-section' },
    h('h2', { id: 'warnings-heading' }, 'Changes that lowered protection'),
    why,
    list,
    h('div', { class: 'actions' }, ackAll),
    note,
  );

  const show = (all) => {
    list.removeAttribute('aria-busy');
    ackAll.hidden = all.length === 0;
    why.hidden = all.length === 0;
    if (!all.length) {
      list.replaceChildren(h('p', { class: 'empty', 'data-testid': 'warnings-none' }, 'Nothing stands: every change that lowered protection is acknowledged.'));
      return;
    }
    const known = new Set(WARNING_GROUPS.map(([g]) => g));
    const groups = WARNING_GROUPS.map(([group, title]) => [group, title, all.filter((w) => (known.has(w.group) ? w.group : 'other') === group)]).filter(([, , ws]) => ws.length);
    list.replaceChildren(
      ...groups.map(([group, title, ws]) => {
        const headingId = `warnings-group-${group}`;
        return h(
          'div',
          { class: 'warnings-group', 'data-group': group, 'data-testid': 'warnings-group', role: 'group', 'aria-labelledby': headingId },
          h('h3', { id: headingId }, title, ' ', h('span', { class: 'warnings-group-count', 'data-testid': 'warnings-group-count' }, `(${ws.length})`)),
          h(
            'ul',
            { class: 'rows' },
            ws.map((w) => {
              const ack = h('button', { type: 'button', class: 'button secondary', 'data-testid': 'warning-ack' }, 'Acknowledge');
              ack.addEventListener('click', async () => {
                ack.disabled = true;
                try {
                  await api('POST', `/api/warnings/${encodeURIComponent(w.id)}/acknowledge`);
                  note.textContent = 'Acknowledged one warning.';
                  warningsChanged();
                  await load();
                  el.focus();
                } catch (e) {
                  ack.disabled = false;
                  note.textContent = e.message;
                }
              });
              return h('li', { class: 'row', 'data-testid': 'warning', 'data-group': group }, h('div', null, h('p', { class: 'hint' }, timeEl(w.at)), h('p', null, w.text ?? w.what)), ack);
            }),
          ),
        );
      }),
    );
  };

  const load = async () => {
    try {
      const all = await api('GET', '/api/warnings');
      if (!ctx.scope.alive) return;
      show(Array.isArray(all) ? all : []);
    } catch (e) {
      list.removeAttribute('aria-busy');
      list.replaceChildren(h('p', null, `Could not load the warnings: ${e.message}`));
    }
  };

  ackAll.addEventListener('click', async () => {
    ackAll.disabled = true;
    try {
      const r = await api('POST', '/api/warnings/acknowledge');
      const n = r?.acknowledged ?? 0;
      note.textContent = n === 1 ? 'Acknowledged 1 warning; it is recorded in the audit log.' : `Acknowledged ${n} warnings; each is recorded in the audit log.`;
      warningsChanged();
      await load();
      el.focus();
    } catch (e) {
      note.textContent = `Could not acknowledge them: ${e.message}`;
    } finally {
      ackAll.disabled = false;
    }
  });

  load().then(() => {
    if (focus && ctx.scope.alive) {
      el.scrollIntoView({ block: 'start' });
      el.focus();
    }
  });
  return el;
}

// --- two-factor --------------------------------------------------------------

function twoFactor(ctx) {
  const body = h('div');
  const el = section('totp-heading', 'Two-factor authentication', 'totp-section', body);

  const showEnabled = () => {
    const error = errorLine('totp-reenroll-error');
    const password = field('Your password', { type: 'password', autocomplete: 'current-password', 'data-testid': 'totp-reenroll-password' }, 'To move two-factor authentication to a new phone. Your current app and recovery codes keep working until the new one is confirmed.');
    const form = h('form', { class: 'inline-form', novalidate: true }, password.wrap, error.el, h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'button secondary', 'data-testid': 'totp-reenroll' }, 'Set up on a new phone')));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      error.clear();
      const done = busy(form);
      try {
        const enrolment = await api('POST', '/api/totp/reenroll', { password: password.input.value });
        done();
        showEnrol(enrolment);
      } catch (e) {
        done();
        error.set(e.status === 403 ? 'That is not your password.' : e.message);
        password.input.focus();
      }
    });
    body.replaceChildren(
      h(
        'p',
        { 'data-testid': 'totp-status', 'data-state': 'on' },
        h('strong', null, 'On. '),
        'Logging in needs your password and a code from your authenticator app, or one of your recovery codes.',
      ),
      form,
    );
  };

  const showOff = () => {
    const start = h('button', { type: 'button', class: 'button primary', 'data-testid': 'totp-enroll' }, 'Set up two-factor authentication');
    const error = errorLine('totp-error');
    start.addEventListener('click', async () => {
      start.disabled = true;
      error.clear();
      try {
        const enrolment = await api('POST', '/api/totp/enroll');
        showEnrol(enrolment);
      } catch (e) {
        start.disabled = false;
        error.set(e.message);
      }
    });
    body.replaceChildren(
      h(
        'p',
        { 'data-testid': 'totp-status', 'data-state': 'off' },
        h('strong', null, 'Off. '),
        'Anyone who learns your password can open this dashboard. With two-factor authentication, logging in also needs a code from an app on your phone.',
      ),
      error.el,
      h('div', { class: 'actions' }, start),
    );
  };

  const showEnrol = (enrolment) => {
    const secret = String(enrolment?.secret ?? '');
    const grouped = secret.replace(/(.{4})/g, '$1 ').trim();
    const error = errorLine('totp-error');
    const code = field(
      'Code from the app',
      { name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: 8, required: true, 'data-testid': 'totp-code' },
      'The 6-digit code the app shows now.',
    );
    const form = h('form', { class: 'inline-form', novalidate: true }, code.wrap, error.el, h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'button primary', 'data-testid': 'totp-confirm' }, 'Turn on two-factor authentication')));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      error.clear();
      const value = code.input.value.replace(/\s+/g, '');
      if (!/^\d{6}$/.test(value)) {
        error.set('Enter the 6 digits the app shows.');
        code.input.focus();
        return;
      }
      const done = busy(form);
      try {
        const result = await api('POST', '/api/totp/confirm', { code: value });
        done();
        ctx.setSessionFlags({ totp_enabled: true });
        showRecovery(result?.recovery_codes ?? []);
        ctx.status('Two-factor authentication is on. Save your recovery codes now.');
      } catch (e) {
        done();
        error.set(e.status === 400 ? `${e.message} Check that the phone’s clock is right, then enter the code the app shows now.` : e.message);
        code.input.focus();
      }
    });
    body.replaceChildren(
      h(
        'ol',
        { class: 'steps' },
        h(
          'li',
          null,
          h('p', null, 'Scan this QR code with an authenticator app on your phone.'),
          h('img', {
            class: 'qr',
            src: `/api/totp/qr.svg?enrolment=${Date.now()}`,
            alt: 'QR code that adds hearth to an authenticator app. If you cannot scan it, type the secret key shown in the next step.',
            width: 200,
            height: 200,
            'data-testid': 'totp-qr',
          }),
        ),
        h('li', null, h('p', null, 'Or type this secret key into the app:'), h('p', null, h('code', { class: 'secret', 'data-testid': 'totp-secret' }, grouped))),
        h('li', null, h('p', null, 'Enter the code the app shows to finish.'), form),
      ),
    );
    code.input.focus();
  };

  const showRecovery = (codes) => {
    const heading = h('h3', { tabindex: -1 }, 'Your recovery codes');
    const copy = async () => {
      try {
        await navigator.clipboard.writeText(codes.join('\n'));
        ctx.status('Copied the recovery codes.');
      } catch {
        ctx.status('The browser did not allow copying; write the codes down instead.', 'error');
      }
    };
    body.replaceChildren(
      h('div', { class: 'recovery', 'data-testid': 'recovery-codes-panel' },
        heading,
        h('p', { class: 'once' }, h('strong', null, 'Shown once — save them now.'), ' Each code works once, in place of an authenticator code, if you lose your phone. Keep them somewhere safe, away from this computer.'),
        h('ol', { class: 'codes', 'data-testid': 'recovery-codes' }, codes.map((c) => h('li', null, h('code', null, c)))),
        h(
          'div',
          { class: 'actions' },
          h('button', { type: 'button', class: 'button secondary', on: { click: copy } }, 'Copy the codes'),
          h('button', { type: 'button', class: 'button primary', 'data-testid': 'recovery-done', on: { click: () => { showEnabled(); el.querySelector('h2').focus(); } } }, 'I have saved them'),
        ),
      ),
    );
    heading.focus();
  };

  if (ctx.session.totp_enabled) showEnabled();
  else showOff();
  el.querySelector('h2').tabIndex = -1;
  return el;
}

// --- password ---------------------------------------------------------------

function passwordForm(ctx) {
  const error = errorLine('password-error');
  const current = field('Current password', { type: 'password', name: 'current', autocomplete: 'current-password', required: true, 'data-testid': 'password-current' });
  const next = field('New password', { type: 'password', name: 'new', autocomplete: 'new-password', minlength: 12, required: true, 'data-testid': 'password-new' }, PASSWORD_POLICY);
  const again = field('New password again', { type: 'password', name: 'again', autocomplete: 'new-password', minlength: 12, required: true, 'data-testid': 'password-again' });
  // For password managers: which account this password belongs to.
  const who = h('input', { type: 'text', name: 'username', autocomplete: 'username', value: ctx.session.username, readOnly: true, hidden: true });
  const form = h('form', { novalidate: true, 'data-testid': 'password-form' }, who, current.wrap, next.wrap, again.wrap, error.el, h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'button primary', 'data-testid': 'password-submit' }, 'Change password')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.clear();
    if (!current.input.value || !next.input.value) {
      error.set('Fill in your current and your new password.');
      return;
    }
    if (next.input.value.length < 12) {
      error.set('The new password needs at least 12 characters.');
      next.input.focus();
      return;
    }
    if (next.input.value !== again.input.value) {
      error.set('The two new passwords differ. Type the same new password twice.');
      again.input.focus();
      return;
    }
    const done = busy(form);
    try {
      await api('POST', '/api/password', { current: current.input.value, new: next.input.value });
      done();
      for (const f of [current, next, again]) f.input.value = '';
      ctx.status('Your password is changed.', 'ok', { carry: Boolean(ctx.session?.must_change_password) });
      if (ctx.session?.must_change_password) {
        ctx.setSessionFlags({ must_change_password: false });
        ctx.navigate('#/home');
      }
    } catch (e) {
      done();
      if (e.status === 403) {
        error.set('The current password is not right.');
        current.input.focus();
      } else error.set(e.message);
    }
  });
  const requireNote = h('p', { 'data-testid': 'password-required', 'aria-live': 'polite' });
  const requireButton = h('button', { type: 'button', class: 'button secondary', 'data-testid': 'password-require' }, 'Require a new password at the next login');
  requireButton.addEventListener('click', async () => {
    const ok = await confirmDialog({
      title: 'Require a new password?',
      body: [h('p', null, 'Every other session ends now. The next login, anywhere, must choose a new password before anything else. This session goes on.')],
      confirm: 'Require it',
      testid: 'password-require-dialog',
    });
    if (!ok) return;
    requireButton.disabled = true;
    try {
      const r = await api('POST', '/api/password/require');
      requireNote.textContent = `Required at the next login; ${r.sessions_ended} other session${r.sessions_ended === 1 ? '' : 's'} ended.`;
    } catch (e) {
      requireNote.textContent = e.message;
      requireButton.disabled = false;
    }
  });
  if (ctx.session.must_change_password) return section('password-heading', 'Password', 'password-section', form);
  return section('password-heading', 'Password', 'password-section', form, h('div', { class: 'actions' }, requireButton), requireNote);
}

// --- sessions ----------------------------------------------------------------

/** "Firefox on Android": what the browser said of itself at log-in. */
function sessionName(s) {
  if (s.browser && s.system) return `${s.browser} on ${s.system}`;
  if (s.browser || s.system) return s.browser ?? `A browser on ${s.system}`;
  // Opened before hearth's last start: hearth keeps no more than that.
  return 'A browser';
}

function sessions(ctx) {
  const list = h('ul', { class: 'rows', 'data-testid': 'sessions' }, h('li', null, 'Loading…'));
  const load = async () => {
    try {
      const all = await api('GET', '/api/sessions');
      if (!ctx.scope.alive) return;
      const sorted = [...(all ?? [])].sort((a, b) => (b.current - a.current) || b.last_seen_at - a.last_seen_at);
      list.replaceChildren(
        ...sorted.map((s) => {
          const revoke = h(
            'button',
            { type: 'button', class: 'button secondary', 'data-testid': 'session-revoke' },
            s.current ? 'Log out here' : 'Revoke',
          );
          const revokeError = errorLine('session-error');
          revoke.addEventListener('click', async () => {
            revoke.disabled = true;
            revokeError.clear();
            try {
              await api('DELETE', `/api/sessions/${encodeURIComponent(s.id)}`);
              if (s.current) {
                await ctx.logout();
                return;
              }
              ctx.status('Revoked that session; it is logged out.');
              load();
            } catch (e) {
              revoke.disabled = false;
              revokeError.set(e.message);
            }
          });
          return h(
            'li',
            { class: ['row', s.current && 'current'], 'data-testid': 'session', 'data-current': s.current ? 'true' : 'false' },
            h(
              'div',
              null,
              h('strong', { 'data-testid': 'session-name' }, sessionName(s)),
              s.current ? [' ', h('span', { class: 'tag', 'data-testid': 'session-current' }, '(this session)')] : null,
              h('p', { class: 'hint' }, s.from ? `From ${s.from}. ` : null, 'Started ', timeEl(s.created_at), '; last active ', ago(s.last_seen_at), '.'),
              revokeError.el,
            ),
            revoke,
          );
        }),
      );
    } catch (e) {
      list.replaceChildren(h('li', null, `Could not load the sessions: ${e.message}`));
    }
  };
  load();
  return section(
    'sessions-heading',
    'Sessions',
    'sessions-section',
    h('p', { class: 'hint' }, 'Every browser that is logged in. Revoke any you do not recognise.'),
    list,
  );
}

// --- lockdown ----------------------------------------------------------------

function lockdown(ctx) {
  const result = h('div', { 'data-testid': 'lockdown-result' });
  const rotate = checkbox(
    'Also rotate every device’s credential',
    { 'data-testid': 'lockdown-rotate' },
    'Each device is disconnected until you enter its new password, shown once below.',
  );
  const error = errorLine('lockdown-error');
  const button = h('button', { type: 'button', class: 'button danger', 'data-testid': 'lockdown' }, 'Log everyone out');
  button.addEventListener('click', async () => {
    const ok = await confirmDialog({
      title: 'Log everyone out?',
      body: [
        h('p', null, 'Every other dashboard session ends, every voice assistant link is revoked, every Matter controller is removed (pair it again later), and Home Assistant’s password stops working (rotate it on Integrations to reconnect).'),
        h('p', null, rotate.input.checked ? 'Every device’s credential is rotated too.' : 'Devices stay connected, and your home keeps working.'),
      ],
      confirm: 'Log everyone out',
      danger: true,
      testid: 'lockdown-dialog',
    });
    if (!ok) return;
    error.clear();
    button.disabled = true;
    try {
      const r = await api('POST', '/api/lockdown', { rotate_devices: rotate.input.checked });
      ctx.status('Everyone else is logged out.');
      const rotated = r.devices_rotated ?? [];
      result.replaceChildren(
        h(
          'p',
          { 'data-testid': 'lockdown-summary' },
          `${r.sessions_ended} other session${r.sessions_ended === 1 ? '' : 's'} ended, ${r.relay_links_revoked} voice link${r.relay_links_revoked === 1 ? '' : 's'} revoked, ${r.matter_controllers_removed ?? 0} Matter controller${r.matter_controllers_removed === 1 ? '' : 's'} removed, Home Assistant’s password ${r.homeassistant_password_revoked ? 'revoked' : 'was not in use'}${r.metrics_token_revoked ? ', the metrics token revoked' : ''}.`,
        ),
        rotated.length
          ? h(
              'div',
              { class: 'provisioning' },
              h('p', { class: 'once' }, h('strong', null, 'New device credentials, shown once.'), ' Enter each into its device.'),
              h('pre', { 'data-testid': 'lockdown-provisioning' }, JSON.stringify(rotated, null, 2)),
            )
          : null,
      );
    } catch (e) {
      error.set(e.message);
    } finally {
      button.disabled = false;
    }
  });
  return section(
    'lockdown-heading',
    'Log everyone out',
    'lockdown-section',
    h('p', { class: 'hint' }, 'For the day something goes wrong: one action ends every other session and revokes every integration’s access, while your devices keep working.'),
    rotate.wrap,
    error.el,
    h('div', { class: 'actions' }, button),
    result,
  );
}

// --- keys --------------------------------------------------------------------

function keys(ctx) {
  const error = errorLine();
  const bar = h('progress', { max: 1, value: 0, 'data-testid': 'keys-progress', 'aria-labelledby': 'keys-heading' });
  const status = h('p', { 'data-testid': 'keys-status', 'aria-live': 'polite' });
  const button = h('button', { type: 'button', class: 'button secondary', 'data-testid': 'keys-rotate' }, 'Rotate the data key');
  const show = (p) => {
    bar.max = Math.max(1, p.total);
    bar.value = p.done;
    if (p.finished) {
      status.dataset.state = 'idle';
      status.textContent = `Every one of the ${p.total} stored records is sealed under one data key.`;
      button.disabled = false;
    } else {
      status.dataset.state = 'rotating';
      status.textContent = `Re-sealing: ${p.done} of ${p.total} records under the new key. The home keeps working meanwhile.`;
      button.disabled = true;
    }
  };
  const poll = async () => {
    try {
      const p = await api('GET', '/api/keys');
      if (!ctx.scope.alive) return;
      show(p);
      if (!p.finished) setTimeout(poll, 300);
    } catch (e) {
      error.set(e.message);
    }
  };
  button.addEventListener('click', async () => {
    const ok = await confirmDialog({
      title: 'Rotate the data key?',
      body: [h('p', null, 'A new key seals everything from now on, every stored record is re-sealed under it, then the old key is destroyed. Nothing stops working, and a restart part-way resumes it.')],
      confirm: 'Rotate',
      testid: 'keys-dialog',
    });
    if (!ok) return;
    error.clear();
    button.disabled = true;
    try {
      show(await api('POST', '/api/keys/rotate'));
      poll();
    } catch (e) {
      error.set(e.message);
      button.disabled = false;
    }
  });
  poll();
  return section(
    'keys-heading',
    'Encryption key',
    'keys-section',
    h('p', { class: 'hint' }, 'Everything hearth stores about your home is sealed with a data key, itself sealed by the master key on this hub. Rotate it if you think a copy of the hub’s files got out.'),
    bar,
    status,
    error.el,
    h('div', { class: 'actions' }, button),
  );
}

// --- backup ------------------------------------------------------------------

function backup(ctx) {
  const error = errorLine();
  const pass = field('Backup passphrase', { type: 'password', autocomplete: 'new-password', minlength: 12, required: true, 'data-testid': 'backup-passphrase' }, 'At least 12 characters. Without it the file cannot be opened, by anyone: keep it somewhere other than the hub.');
  const again = field('The passphrase again', { type: 'password', autocomplete: 'new-password', required: true, 'data-testid': 'backup-passphrase-again' });
  const password = field('Your password', { type: 'password', autocomplete: 'current-password', required: true, 'data-testid': 'backup-password' });
  const code = field('Two-factor code', { inputmode: 'numeric', autocomplete: 'one-time-code', 'data-testid': 'backup-code' }, 'From your authenticator app, when two-factor authentication is on.');
  const done = h('p', { 'data-testid': 'backup-done', 'aria-live': 'polite' });
  const button = h('button', { type: 'submit', class: 'button primary', 'data-testid': 'backup-download' }, 'Download a backup');
  const form = h('form', { class: 'inline-form', novalidate: true }, pass.wrap, again.wrap, password.wrap, code.wrap, error.el, h('div', { class: 'actions' }, button), done);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.clear();
    done.textContent = '';
    if (pass.input.value.trim().length < 12) return error.set('The passphrase needs at least 12 characters.');
    if (pass.input.value !== again.input.value) return error.set('The two passphrases differ.');
    button.disabled = true;
    try {
      const blob = await download('/api/backup', { passphrase: pass.input.value, password: password.input.value, code: code.input.value.trim() || null });
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: 'hearth.hearthbackup', hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      for (const f of [pass, again, password, code]) f.input.value = '';
      done.textContent = `Backup downloaded (${blob.size} bytes). Restore it with: hearth backup restore FILE`;
    } catch (e) {
      error.set(e.message);
    } finally {
      button.disabled = false;
    }
  });
  return section(
    'backup-heading',
    'Backup',
    'backup-section',
    h('p', { class: 'hint' }, 'One encrypted file with everything hearth holds and the key to open it, sealed under a passphrase you choose (argon2id and ChaCha20-Poly1305).'),
    form,
  );
}

// --- erase -------------------------------------------------------------------

function eraseAll() {
  const error = errorLine('erase-error');
  const confirmText = field('Type “erase everything”', { autocomplete: 'off', 'data-testid': 'erase-confirm' });
  const password = field('Your password', { type: 'password', autocomplete: 'current-password', 'data-testid': 'erase-password' });
  const code = field('Two-factor code', { inputmode: 'numeric', autocomplete: 'one-time-code', 'data-testid': 'erase-code' });
  const done = h('p', { 'data-testid': 'erase-done', role: 'status' });
  const button = h('button', { type: 'submit', class: 'button danger', 'data-testid': 'erase' }, 'Erase everything');
  const form = h('form', { class: 'inline-form', novalidate: true }, confirmText.wrap, password.wrap, code.wrap, error.el, h('div', { class: 'actions' }, button), done);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.clear();
    if (confirmText.input.value.trim() !== 'erase everything') return error.set('Type “erase everything” to confirm.');
    button.disabled = true;
    try {
      await api('POST', '/api/erase', { confirm: 'erase everything', password: password.input.value, code: code.input.value.trim() || null });
      form.replaceChildren(h('p', { 'data-testid': 'erase-done' }, h('strong', null, 'Erased. '), 'The keys were destroyed first, then the backups hearth wrote; hearth has stopped and removes its files. Started again, it is a fresh install.'));
    } catch (e) {
      error.set(e.message);
      button.disabled = false;
    }
  });
  return section(
    'erase-heading',
    'Erase everything',
    'erase-section',
    h('p', { class: 'hint' }, 'Destroys the keys first, so nothing left on the disk can be read, then the backups hearth wrote and every file. Devices, accounts and the audit log are gone for good. Backups you downloaded stay sealed under their passphrase.'),
    form,
  );
}

// --- audit -------------------------------------------------------------------


function toUnix(value) {
  if (!value) return null;
  const t = Date.parse(value);
  return Number.isNaN(t) ? null : Math.floor(t / 1000);
}

function audit(ctx) {
  const body = h('tbody');
  const table = h(
    'div',
    { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': 'Audit events' },
    h(
      'table',
      { class: 'stack', 'data-testid': 'audit' },
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'When'), h('th', { scope: 'col' }, 'Event'), h('th', { scope: 'col' }, 'By'), h('th', { scope: 'col' }, 'Outcome'), h('th', { scope: 'col' }, 'Detail'))),
      body,
    ),
  );
  const chain = h('p', { 'data-testid': 'audit-chain', 'data-state': 'checking' }, 'Checking the log’s hash chain…');
  const check = async () => {
    try {
      const v = await api('GET', '/api/audit/verify');
      if (!ctx.scope.alive) return;
      if (v.verified) {
        chain.dataset.state = 'verified';
        chain.replaceChildren(h('strong', null, 'Verified. '), `Every one of the ${v.entries} chained entries is intact and in order.`);
      } else {
        chain.dataset.state = 'broken';
        chain.className = 'form-error';
        chain.setAttribute('role', 'alert');
        chain.replaceChildren(h('strong', null, 'Broken. '), `Entry ${v.problem?.entry}: ${v.problem?.why}. Someone with access to the hub’s files changed the log.`);
      }
    } catch (e) {
      chain.dataset.state = 'unknown';
      chain.textContent = `Could not check the log: ${e.message}`;
    }
  };
  check();

  const typeId = 'audit-filter-event';
  // The event types hearth writes, with their words: one list, the daemon's.
  const type = h('select', { id: typeId, 'data-testid': 'audit-filter-event' }, h('option', { value: '' }, 'Every type'));
  api('GET', '/api/audit/types')
    .then((types) => {
      if (!ctx.scope.alive) return;
      const chosen = type.value;
      type.append(...types.map((t) => h('option', { value: t.event }, t.wording)));
      type.value = chosen;
    })
    .catch(() => type.append(h('option', { value: '', disabled: true }, 'The types could not be loaded')));
  const outcomeId = 'audit-filter-outcome';
  const outcome = h(
    'select',
    { id: outcomeId, 'data-testid': 'audit-filter-outcome' },
    h('option', { value: '' }, 'Any outcome'),
    h('option', { value: 'ok' }, 'Done'),
    h('option', { value: 'refused' }, 'Refused'),
    h('option', { value: 'failed' }, 'Failed'),
  );
  const since = field('From', { type: 'datetime-local', 'data-testid': 'audit-filter-since' });
  const until = field('Until', { type: 'datetime-local', 'data-testid': 'audit-filter-until' });
  const count = h('p', { class: 'hint', 'data-testid': 'audit-count', 'aria-live': 'polite' });
  const query = () => {
    const q = new URLSearchParams();
    if (type.value) q.set('event', type.value);
    if (outcome.value) q.set('outcome', outcome.value);
    const s = toUnix(since.input.value);
    const u = toUnix(until.input.value);
    if (s !== null) q.set('since', String(s));
    if (u !== null) q.set('until', String(u + 59));
    return q.toString();
  };
  const load = async () => {
    try {
      const q = query();
      const events = await api('GET', q ? `/api/audit?${q}` : '/api/audit');
      if (!ctx.scope.alive) return;
      const n = events.length;
      const noun = `event${n === 1 ? '' : 's'}`;
      count.textContent = q ? `${n} matching ${noun}, newest first.` : `The newest ${n} ${noun}.`;
      if (!events?.length) {
        body.replaceChildren(h('tr', null, h('td', { colspan: 5 }, q ? 'No event matches.' : 'Nothing recorded yet.')));
        return;
      }
      body.replaceChildren(
        ...events.map((e) =>
          h(
            'tr',
            { 'data-testid': 'audit-event', 'data-event': e.event, 'data-outcome': e.outcome },
            h('td', { 'data-label': 'When' }, timeEl(e.at)),
            h('td', { 'data-label': 'Event' }, e.wording ?? e.event),
            h('td', { 'data-label': 'By', title: e.actor || null }, e.actor_name || e.actor || '—'),
            h('td', { class: 'nowrap', 'data-label': 'Outcome' }, e.outcome === 'ok' ? 'Done' : e.outcome === 'refused' ? 'Refused' : e.outcome === 'failed' ? 'Failed' : '—'),
            h('td', { 'data-label': 'Detail' }, e.detail_named ?? e.detail ?? ''),
          ),
        ),
      );
    } catch (e) {
      body.replaceChildren(h('tr', null, h('td', { colspan: 5 }, `Could not load the audit log: ${e.message}`)));
    }
  };
  load();
  const form = h(
    'form',
    { class: 'filters', 'data-testid': 'audit-filter', 'aria-label': 'Filter the audit log' },
    h('div', { class: 'field' }, h('label', { for: typeId }, 'Type'), type),
    h('div', { class: 'field' }, h('label', { for: outcomeId }, 'Outcome'), outcome),
    since.wrap,
    until.wrap,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'button primary', 'data-testid': 'audit-filter-apply' }, 'Show'), h('a', { href: '/api/audit/export', download: 'hearth-audit.json', class: 'button secondary', 'data-testid': 'audit-export' }, 'Export as JSON')),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    load();
  });
  return section(
    'audit-heading',
    'Activity',
    'audit-section',
    h('p', { class: 'hint' }, 'Security events from hearth’s tamper-evident audit log: log-ins, changes to accounts, devices and integrations, voice assistant calls (counted per minute), lockdowns. The export holds every kept event, oldest first.'),
    chain,
    form,
    count,
    table,
  );
}

/** `#/security/warnings` opens the page at the standing warnings. */
export function renderSecurity(ctx, anchor) {
  if (ctx.session.must_change_password) {
    ctx.main.append(h('h1', null, 'Security'), passwordForm(ctx));
    return 'Security';
  }
  ctx.main.append(h('h1', null, 'Security'), warnings(ctx, { focus: anchor === 'warnings' }), twoFactor(ctx), passwordForm(ctx), sessions(ctx), lockdown(ctx), keys(ctx), backup(ctx), audit(ctx), eraseAll());
  return 'Security';
}
