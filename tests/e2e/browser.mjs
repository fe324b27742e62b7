// What the browser tests and the dashboard benchmark (bench/dashboard.mjs)
// share: Debian's Chromium and its flags, bounded waits, and trusting
// exactly the dashboard's key once node:tls has verified its certificate.

import { createHash } from 'node:crypto';
import tls from 'node:tls';

export const CHROMIUM = process.env.HEARTH_CHROMIUM ?? '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** A check that failed: its message says it all (no stack needed). */
export class Failure extends Error {}

export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Failure(`${what}: took longer than ${ms} ms`)), ms);
    }),
  ]);
}

/** Connects with node:tls, verifying the chain against `ca` and the address. */
export function verifiedPeerCertificate(url, ca) {
  const { hostname, port } = new URL(url);
  return withTimeout(
    new Promise((resolve, reject) => {
      const socket = tls.connect({ host: hostname, port: Number(port), ca, rejectUnauthorized: true }, () => {
        const cert = socket.getPeerX509Certificate();
        const protocol = socket.getProtocol();
        socket.end();
        resolve({ cert, protocol });
      });
      socket.on('error', reject);
    }),
    10_000,
    `TLS handshake with ${url}`,
  );
}

/**
 * Chromium's flags, accepting exactly `cert`'s public key (by its SHA-256
 * SPKI hash): any other certificate is still refused.
 */
export function chromiumArgs(cert) {
  const spki = createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
  return [...CHROMIUM_ARGS, `--ignore-certificate-errors-spki-list=${spki}`];
}
