// RFC 4226 HOTP and RFC 6238 TOTP (HMAC-SHA1), written for the browser
// tests so that they compute codes the way an authenticator app does,
// independently of hearth's own implementation.

import { createHmac } from 'node:crypto';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32, as authenticator apps read it: case and spaces ignored. */
export function base32Decode(text) {
  const clean = text.replace(/[\s=-]/g, '').toUpperCase();
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of clean) {
    const index = ALPHABET.indexOf(ch);
    if (index < 0) throw new Error(`not base32: ${JSON.stringify(ch)}`);
    value = (value << 5) | index;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

/** RFC 4226 section 5.3: HMAC-SHA1 over the 8-byte counter, dynamic truncation. */
export function hotp(key, counter, digits = 6) {
  const message = Buffer.alloc(8);
  message.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', key).update(message).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const binary = ((mac[offset] & 0x7f) << 24) | (mac[offset + 1] << 16) | (mac[offset + 2] << 8) | mac[offset + 3];
  return String(binary % 10 ** digits).padStart(digits, '0');
}

/** The 30-second step a unix time falls in. */
export function timeStep(unixSecs, period = 30) {
  return Math.floor(unixSecs / period);
}

/** RFC 6238: the code for a given step (SHA1, 6 digits, 30 s by default). */
export function totpAt(key, step, digits = 6) {
  return hotp(key, step, digits);
}

/**
 * Checks this implementation against RFC 6238 appendix B (SHA1 rows, 8
 * digits) and RFC 4226 appendix D; throws on any mismatch.
 */
export function selfCheck() {
  const key = Buffer.from('12345678901234567890', 'ascii');
  const rfc6238 = [
    [59, '94287082'],
    [1111111109, '07081804'],
    [1111111111, '14050471'],
    [1234567890, '89005924'],
    [2000000000, '69279037'],
    [20000000000, '65353130'],
  ];
  for (const [time, expected] of rfc6238) {
    const got = totpAt(key, timeStep(time), 8);
    if (got !== expected) throw new Error(`TOTP self-check failed at T=${time}: ${got} != ${expected}`);
  }
  const rfc4226 = ['755224', '287082', '359152', '969429', '338314', '254676', '287922', '162583', '399871', '520489'];
  rfc4226.forEach((expected, counter) => {
    const got = hotp(key, counter);
    if (got !== expected) throw new Error(`HOTP self-check failed at counter ${counter}: ${got} != ${expected}`);
  });
  // Base32 of the same key, as an app would be given it.
  if (!base32Decode('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ').equals(key)) throw new Error('base32 self-check failed');
}
