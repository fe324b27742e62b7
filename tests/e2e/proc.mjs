// Child processes for the browser tests: line capture, bounded waits for a
// line, and a guaranteed stop (also when the test fails or is interrupted).

import { spawn } from 'node:child_process';
import fs from 'node:fs';

const running = new Set();

/** Kills every process still running, synchronously: for exit paths. */
export function killAllNow() {
  for (const p of running) {
    try {
      p.child.kill('SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

process.on('exit', killAllNow);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    console.error(`e2e: ${signal}: stopping the processes it started`);
    killAllNow();
    process.exit(130);
  });
}

export class Proc {
  /**
   * Starts `command args`. Its stdout and stderr lines are kept (and
   * copied to `logFile`, when given, and echoed with `echo`) for waitFor().
   */
  constructor(name, command, args, { logFile = null, env = process.env, echo = false } = {}) {
    this.name = name;
    this.echo = echo;
    this.lines = [];
    this.exit = null;
    this.waiters = new Set();
    this.log = logFile ? fs.createWriteStream(logFile, { flags: 'w', mode: 0o600 }) : null;
    this.child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    running.add(this);
    for (const stream of [this.child.stdout, this.child.stderr]) {
      let partial = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk) => {
        partial += chunk;
        let newline;
        while ((newline = partial.indexOf('\n')) >= 0) {
          this.push(partial.slice(0, newline));
          partial = partial.slice(newline + 1);
        }
      });
      stream.on('end', () => {
        if (partial) this.push(partial);
        partial = '';
      });
    }
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        running.delete(this);
        this.notify();
        resolve(this.exit);
      });
      this.child.on('error', (error) => {
        this.exit = { error };
        running.delete(this);
        this.notify();
        resolve(this.exit);
      });
    });
  }

  push(line) {
    this.lines.push(line);
    this.log?.write(`${line}\n`);
    if (this.echo) console.log(`    ${this.name}| ${line}`);
    this.notify();
  }

  notify() {
    for (const w of [...this.waiters]) w();
  }

  /** The index of the next line; pass it as `from` to wait for later output only. */
  mark() {
    return this.lines.length;
  }

  /** The last lines, for error messages. */
  tail(n = 25) {
    return this.lines.slice(-n).map((l) => `    ${this.name}| ${l}`).join('\n');
  }

  /**
   * Resolves with the regexp match of the first line at or after `from`
   * that matches; rejects after `timeout` ms or if the process exits first.
   */
  waitFor(pattern, { from = 0, timeout = 15000, what = String(pattern) } = {}) {
    return new Promise((resolve, reject) => {
      let timer = null;
      const check = () => {
        for (let i = from; i < this.lines.length; i++) {
          const match = this.lines[i].match(pattern);
          if (match) {
            finish();
            resolve(match);
            return;
          }
        }
        if (this.exit) {
          finish();
          reject(new Error(`${this.name} exited (${JSON.stringify(this.exit)}) before printing ${what}\n${this.tail()}`));
        }
      };
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      timer = setTimeout(() => {
        finish();
        reject(new Error(`${this.name} did not print ${what} within ${timeout} ms\n${this.tail()}`));
      }, timeout);
      this.waiters.add(check);
      check();
    });
  }

  /** SIGTERM, then SIGKILL if it is still running after `grace` ms. */
  async stop(grace = 10000) {
    if (!this.exit) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), grace);
      await this.exited;
      clearTimeout(timer);
    }
    await new Promise((resolve) => (this.log ? this.log.end(resolve) : resolve()));
    return this.exit;
  }
}
