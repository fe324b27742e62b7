// The JSON API client. The CSRF token lives only in memory (never in
// storage): it is fetched again from /api/session on every page load.

let csrf = null;
let onUnauthorized = null;

// Calls that answer 401 as part of their normal work, not because the
// session ended.
const PUBLIC = new Set(['/api/state', '/api/setup', '/api/login']);

export function setCsrf(token) {
  csrf = token;
}

/** Called when a logged-in request is refused because the session ended. */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

export class ApiError extends Error {
  constructor(status, body, retryAfterHeader) {
    super(ApiError.describe(status, body));
    this.status = status;
    this.body = body ?? {};
    const fromBody = Number(this.body.retry_after_secs);
    const fromHeader = Number(retryAfterHeader);
    this.retryAfter = Number.isFinite(fromBody) && fromBody > 0 ? fromBody : Number.isFinite(fromHeader) && fromHeader > 0 ? fromHeader : null;
  }

  static describe(status, body) {
    if (body && typeof body.error === 'string' && body.error) return sentence(body.error);
    switch (status) {
      case 0:
        return 'hearth cannot be reached. Check that it is running and that this device is on the home network.';
      case 401:
        return 'You are not logged in.';
      case 403:
        return 'hearth refused this request.';
      case 404:
        return 'Not found: it may have been removed.';
      case 413:
        return 'That is too long.';
      case 429:
        return 'Too many attempts. Wait a moment and try again.';
      default:
        return `Something went wrong (HTTP ${status}). Try again.`;
    }
  }
}

function sentence(text) {
  const t = text.trim();
  const capital = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

/**
 * Sends one request. Resolves with the parsed JSON (or null for an empty
 * answer); rejects with ApiError for any non-2xx status or network failure.
 */
export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-CSRF-Token'] = csrf;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
      redirect: 'error',
    });
  } catch {
    throw new ApiError(0, null);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data, response.headers.get('Retry-After'));
    if (response.status === 401 && !PUBLIC.has(path) && onUnauthorized) onUnauthorized();
    throw error;
  }
  return data;
}

/** POSTs JSON and returns the answer as a Blob (a file to download). */
export async function download(path, body) {
  const headers = { Accept: 'application/octet-stream', 'Content-Type': 'application/json' };
  if (csrf) headers['X-CSRF-Token'] = csrf;
  let response;
  try {
    response = await fetch(path, { method: 'POST', headers, body: JSON.stringify(body), credentials: 'same-origin', cache: 'no-store', redirect: 'error' });
  } catch {
    throw new ApiError(0, null);
  }
  if (!response.ok) {
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    throw new ApiError(response.status, data, response.headers.get('Retry-After'));
  }
  return response.blob();
}
