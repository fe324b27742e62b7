// First-run setup and login.

import { api } from './api.js';
import { busy, errorLine, field, h } from './dom.js';

export const PASSWORD_POLICY =
  'At least 12 characters. Common and leaked passwords are refused. ' +
  'A few unrelated words make a password that is long, easy to remember and hard to guess.';

export function renderSetup(ctx) {
  const error = errorLine('setup-error');
  const code = field(
    'One-time setup code',
    { name: 'code', autocomplete: 'off', spellcheck: 'false', autocapitalize: 'characters', required: true, 'data-testid': 'setup-code' },
    'hearth printed it when it started; it is also in the file setup-code in its data directory. It works once.',
  );
  const username = field('Username', { name: 'username', autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false', required: true, maxlength: 64, 'data-testid': 'setup-username' });
  const password = field('Password', { type: 'password', name: 'password', autocomplete: 'new-password', required: true, minlength: 12, 'data-testid': 'setup-password' }, PASSWORD_POLICY);
  const confirm = field('Password again', { type: 'password', name: 'confirm', autocomplete: 'new-password', required: true, minlength: 12, 'data-testid': 'setup-confirm' });

  const form = h(
    'form',
    { class: 'panel narrow', 'data-testid': 'setup-form', novalidate: true },
    code.wrap,
    username.wrap,
    password.wrap,
    confirm.wrap,
    error.el,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'button primary', 'data-testid': 'setup-submit' }, 'Create the owner account')),
  );

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.clear();
    const values = {
      code: code.input.value.trim(),
      username: username.input.value.trim(),
      password: password.input.value,
    };
    if (!values.code || !values.username || !values.password) {
      error.set('Fill in every field.');
      return;
    }
    if (values.password.length < 12) {
      error.set('The password needs at least 12 characters.');
      password.input.focus();
      return;
    }
    if (values.password !== confirm.input.value) {
      error.set('The two passwords differ. Type the same password twice.');
      confirm.input.focus();
      return;
    }
    const done = busy(form);
    try {
      const session = await api('POST', '/api/setup', values);
      done();
      ctx.status(`Welcome, ${session.username}. Your owner account is ready.`, 'ok', { carry: true });
      await ctx.loggedIn(session);
    } catch (e) {
      done();
      if (e.status === 403) {
        error.set(`${e.message} Check the code hearth printed when it started.`);
        code.input.focus();
      } else if (e.status === 409) {
        error.set('hearth is already set up. Reload the page to log in.');
      } else if (e.status === 429) {
        error.set(`Too many attempts. Wait ${e.retryAfter ?? 'a few'} seconds, then try again.`);
      } else {
        error.set(e.message);
      }
    }
  });

  ctx.main.append(
    h('h1', null, 'Set up hearth'),
    h(
      'p',
      { class: 'lead' },
      'This hub has no owner yet. Create the owner account with the one-time code hearth printed when it started. ' +
        'Only someone who can read the hub’s console or data directory has that code.',
    ),
    form,
  );
  return 'Set up';
}

export function renderLogin(ctx) {
  const error = errorLine('login-error');
  const username = field('Username', { name: 'username', autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false', required: true, 'data-testid': 'login-username' });
  const password = field('Password', { type: 'password', name: 'password', autocomplete: 'current-password', required: true, 'data-testid': 'login-password' });
  const code = field(
    'Authenticator code or recovery code',
    { name: 'code', autocomplete: 'one-time-code', autocapitalize: 'none', spellcheck: 'false', 'data-testid': 'login-code' },
    'The 6-digit code your authenticator app shows now, or one of your unused recovery codes.',
  );
  code.wrap.hidden = true;
  const submit = h('button', { type: 'submit', class: 'button primary', 'data-testid': 'login-submit' }, 'Log in');
  const wait = h('p', { class: 'hint', 'data-testid': 'login-wait', hidden: true });

  const form = h('form', { class: 'panel narrow', 'data-testid': 'login-form', novalidate: true }, username.wrap, password.wrap, code.wrap, error.el, wait, h('div', { class: 'actions' }, submit));

  let throttledUntil = 0;
  const tick = () => {
    const left = Math.ceil((throttledUntil - Date.now()) / 1000);
    if (left > 0) {
      submit.disabled = true;
      wait.hidden = false;
      wait.textContent = `You can try again in ${left} second${left === 1 ? '' : 's'}.`;
    } else if (throttledUntil) {
      throttledUntil = 0;
      submit.disabled = false;
      wait.hidden = true;
      error.set('You can try again now.');
    }
  };
  ctx.scope.every(1000, tick);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (throttledUntil) return;
    error.clear();
    const body = { username: username.input.value.trim(), password: password.input.value };
    if (!body.username || !body.password) {
      error.set('Enter your username and password.');
      return;
    }
    const codeValue = code.input.value.replace(/\s+/g, '');
    if (!code.wrap.hidden && codeValue) body.code = codeValue;
    const done = busy(form);
    try {
      const session = await api('POST', '/api/login', body);
      done();
      await ctx.loggedIn(session);
    } catch (e) {
      done();
      if (e.status === 401 && e.body?.totp_required) {
        const first = code.wrap.hidden;
        code.wrap.hidden = false;
        code.input.required = true;
        code.input.value = '';
        error.set(
          first
            ? 'Two-factor authentication is on for this account. Enter the code from your authenticator app, or a recovery code.'
            : 'That code was not accepted. Codes change every 30 seconds and each one works only once; enter the current one.',
        );
        code.input.focus();
      } else if (e.status === 401) {
        // One message for every refusal: the page never tells whether an
        // account exists.
        error.set('The username or password is not right.');
        password.input.value = '';
        password.input.focus();
      } else if (e.status === 429) {
        const secs = e.retryAfter ?? 60;
        throttledUntil = Date.now() + secs * 1000;
        error.set(`Too many attempts. To protect this account, logging in is paused for ${secs} second${secs === 1 ? '' : 's'}.`);
        tick();
      } else {
        error.set(e.message);
      }
    }
  });

  ctx.main.append(h('h1', null, 'Log in to hearth'), form);
  return 'Log in';
}
