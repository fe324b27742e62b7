// Small DOM helpers. Strings always become text nodes or attribute values:
// nothing here parses HTML, so device-provided names cannot inject markup.

const PROPERTIES = new Set(['value', 'checked', 'disabled', 'hidden', 'required', 'readOnly', 'open', 'multiple']);

/**
 * Creates an element. `props`: attributes by name; `on` maps event names to
 * handlers; `class` may be a list (falsy entries dropped); `null`,
 * `undefined` and `false` leave an attribute out. Children may be nodes,
 * strings, numbers, nested lists, or nothing.
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'on') {
      for (const [type, handler] of Object.entries(value)) el.addEventListener(type, handler);
    } else if (key === 'class') {
      el.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
    } else if (PROPERTIES.has(key)) {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

let counter = 0;
/** A document-unique id, for label/aria wiring. */
export function uid(prefix = 'id') {
  counter += 1;
  return `${prefix}-${counter}`;
}

/**
 * A labelled form field: label, control, an optional hint (wired with
 * aria-describedby) and the control itself for the caller.
 * `attrs` go onto the <input>; `hint` is text.
 */
export function field(label, attrs = {}, hint = null) {
  const id = attrs.id ?? uid('field');
  const hintId = hint ? `${id}-hint` : null;
  const input = h('input', { type: 'text', ...attrs, id, 'aria-describedby': hintId });
  const wrap = h(
    'div',
    { class: 'field' },
    h('label', { for: id }, label),
    input,
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null,
  );
  return { wrap, input };
}

/** A labelled checkbox with an explanation. */
export function checkbox(label, attrs = {}, hint = null) {
  const id = attrs.id ?? uid('check');
  const hintId = hint ? `${id}-hint` : null;
  const input = h('input', { type: 'checkbox', ...attrs, id, 'aria-describedby': hintId });
  const wrap = h(
    'div',
    { class: 'field check' },
    input,
    h('label', { for: id }, label),
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null,
  );
  return { wrap, input };
}

/**
 * An error line for a form. It exists (empty) from the start, so that
 * screen readers announce it when text arrives.
 */
export function errorLine(testid) {
  const el = h('p', { class: 'form-error', role: 'alert', 'data-testid': testid });
  return {
    el,
    set(text) {
      el.textContent = text ?? '';
    },
    clear() {
      el.textContent = '';
    },
  };
}

/** Formats a unix time (seconds) as a <time> element in the reader's locale. */
export function timeEl(secs) {
  if (secs === null || secs === undefined) return null;
  const date = new Date(secs * 1000);
  return h('time', { datetime: date.toISOString(), title: date.toISOString() }, date.toLocaleString());
}

/** "3 minutes ago"-style text, for glanceable times next to the full one. */
export function ago(secs) {
  const delta = Math.round(Date.now() / 1000 - secs);
  if (delta < 45) return 'just now';
  const fmt = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  if (delta < 3600) return fmt.format(-Math.round(delta / 60), 'minute');
  if (delta < 86400) return fmt.format(-Math.round(delta / 3600), 'hour');
  return fmt.format(-Math.round(delta / 86400), 'day');
}

/** Disables a form's controls while a request runs; returns the undo. */
export function busy(form) {
  const controls = [...form.querySelectorAll('button, input, select, textarea')].filter((c) => !c.disabled);
  form.setAttribute('aria-busy', 'true');
  for (const c of controls) c.disabled = true;
  return () => {
    form.removeAttribute('aria-busy');
    for (const c of controls) c.disabled = false;
  };
}

/**
 * Rebuilds part of the page without losing the reader's place: the element
 * that had focus is found again by its data-focus-key and focused.
 */
export function keepFocus(rebuild) {
  const key = document.activeElement?.dataset?.focusKey;
  rebuild();
  if (key) {
    const again = document.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
    if (again) again.focus({ preventScroll: true });
  }
}

/**
 * Asks a yes/no question in a modal <dialog>. Resolves true when the owner
 * confirms. `body` is a list of nodes or strings.
 */
export function confirmDialog({ title, body, confirm, danger = false, testid = 'confirm-dialog' }) {
  return new Promise((resolve) => {
    const titleId = uid('dialog-title');
    const bodyId = uid('dialog-body');
    const cancelButton = h('button', { type: 'submit', value: 'cancel', class: 'button secondary', 'data-testid': `${testid}-cancel` }, 'Cancel');
    const dialog = h(
      'dialog',
      { class: 'dialog', 'aria-labelledby': titleId, 'aria-describedby': bodyId, 'data-testid': testid },
      h(
        'form',
        { method: 'dialog' },
        h('h2', { id: titleId }, title),
        h('div', { id: bodyId, class: 'dialog-body' }, body),
        h(
          'div',
          { class: 'actions' },
          cancelButton,
          h('button', { type: 'submit', value: 'confirm', class: ['button', danger ? 'danger' : 'primary'], 'data-testid': `${testid}-confirm` }, confirm),
        ),
      ),
    );
    const opener = document.activeElement;
    dialog.addEventListener('close', () => {
      const ok = dialog.returnValue === 'confirm';
      dialog.remove();
      if (opener && opener.isConnected) opener.focus();
      resolve(ok);
    });
    document.body.append(dialog);
    dialog.showModal();
    // The safe choice gets focus first.
    cancelButton.focus();
  });
}

export const KIND_LABELS = {
  bulb: ['Bulb', 'Bulbs'],
  plug: ['Plug', 'Plugs'],
  light_strip: ['Light strip', 'Light strips'],
  camera: ['Camera', 'Cameras'],
  doorbell: ['Doorbell', 'Doorbells'],
  motion_sensor: ['Motion sensor', 'Motion sensors'],
  contact_sensor: ['Door or window sensor', 'Door and window sensors'],
  climate_sensor: ['Temperature and humidity sensor', 'Temperature and humidity sensors'],
  water_sensor: ['Water sensor', 'Water sensors'],
  other: ['Other device', 'Other devices'],
};

export function kindLabel(kind, plural = false) {
  const labels = KIND_LABELS[kind] ?? KIND_LABELS.other;
  return labels[plural ? 1 : 0];
}

/** The name the owner gave, or a plain description when there is none. */
export function deviceName(device) {
  return device.nickname || `Unnamed ${kindLabel(device.kind).toLowerCase()}`;
}

export const isLight = (device) => ['bulb', 'plug', 'light_strip'].includes(device.kind);
export const dims = (device) => ['bulb', 'light_strip'].includes(device.kind);
export const isCamera = (device) => ['camera', 'doorbell'].includes(device.kind);
export const sensesMotion = (device) => ['camera', 'doorbell', 'motion_sensor'].includes(device.kind);
/** Devices that only report: never switched, never given to voice assistants. */
export const isSensor = (device) => sensesMotion(device) || ['contact_sensor', 'climate_sensor', 'water_sensor'].includes(device.kind);
