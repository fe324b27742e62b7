// Drives device.mjs and controller.mjs against each other, step by step, the
// way a Rust test will drive controller.mjs against hearth. selftest.sh runs
// it with the two processes in separate network namespaces; alone, it runs
// both on loopback.
//
// Environment: DEVICE_CMD / CONTROLLER_CMD (a JSON array: the argv prefix,
// e.g. ["ip","netns","exec","ns1"]), DEVICE_IP (default 127.0.0.1),
// DEVICE_PORT (default 5540), SELFTEST_DIR (a temp dir for both storages),
// SELFTEST_VERBOSE=1 (echo both sides' stdout), SELFTEST_LOG_DIR (keep both
// sides' stderr there).

import { spawn } from "node:child_process";
import { createWriteStream, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { ManualPairingCodeCodec } from "@matter/main/types";

const here = dirname(fileURLToPath(import.meta.url));
const dir = process.env.SELFTEST_DIR ?? mkdtempSync(join(tmpdir(), "matter-selftest-"));
const deviceIp = process.env.DEVICE_IP ?? "127.0.0.1";
const devicePort = Number(process.env.DEVICE_PORT ?? 5540);
const t0 = Date.now();
const since = () => `${((Date.now() - t0) / 1000).toFixed(2)} s`;

let failures = 0;
function check(cond, what, detail) {
    console.log(`${cond ? "ok" : "not ok"} - ${what} (${since()})${cond || detail === undefined ? "" : ": " + JSON.stringify(detail)}`);
    if (!cond) failures++;
}

// A JSON-lines child: send() a command and wait (bounded) for its answer;
// next(pred) waits (bounded) for an unsolicited line matching pred.
function child(name, prefix, script, env) {
    const [cmd, ...args] = [...prefix, "env", ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
        process.execPath, join(here, script)];
    const proc = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    const lines = [];
    const waiters = [];
    const deliver = () => {
        for (let i = 0; i < waiters.length; i++) {
            const w = waiters[i];
            const j = lines.findIndex(w.pred);
            if (j >= 0) {
                const [line] = lines.splice(j, 1);
                waiters.splice(i--, 1);
                clearTimeout(w.timer);
                w.resolve(line);
            }
        }
    };
    createInterface({ input: proc.stdout }).on("line", text => {
        let obj;
        try { obj = JSON.parse(text); } catch { obj = { garbage: text }; }
        if (process.env.SELFTEST_VERBOSE) console.log(`# ${name} > ${text}`);
        lines.push(obj);
        deliver();
    });
    const errLog = [];
    // SELFTEST_LOG_DIR keeps each side's whole matter.js log (colour codes and all).
    if (process.env.SELFTEST_LOG_DIR) proc.stderr.pipe(createWriteStream(join(process.env.SELFTEST_LOG_DIR, `${name}.log`)));
    createInterface({ input: proc.stderr }).on("line", text => {
        errLog.push(text);
        if (errLog.length > 400) errLog.shift();
    });
    const next = (pred, ms = 20_000) => new Promise((resolve, reject) => {
        const w = { pred, resolve, timer: setTimeout(() => {
            waiters.splice(waiters.indexOf(w), 1);
            reject(new Error(`${name}: nothing matching within ${ms} ms`));
        }, ms) };
        waiters.push(w);
        deliver();
    });
    let seq = 0;
    const send = (msg, ms) => {
        const id = ++seq;
        proc.stdin.write(JSON.stringify({ ...msg, id }) + "\n");
        return next(l => l.id === id || (l.ok !== undefined && l.id === undefined), ms);
    };
    const exited = new Promise(resolve => proc.on("exit", code => resolve(code)));
    return { proc, send, next, exited, errLog, name };
}

const devEnv = { MATTER_STORAGE_PATH: join(dir, "device"), DEVICE_PORT: devicePort, MATTER_LOG_LEVEL: process.env.MATTER_LOG_LEVEL ?? "info" };
const ctlEnv = { MATTER_STORAGE_PATH: join(dir, "controller"), MATTER_LOG_LEVEL: process.env.MATTER_LOG_LEVEL ?? "info" };
if (process.env.CONTROLLER_MDNS_IF) ctlEnv.MATTER_MDNS_NETWORKINTERFACE = process.env.CONTROLLER_MDNS_IF;
if (process.env.DEVICE_MDNS_IF) devEnv.MATTER_MDNS_NETWORKINTERFACE = process.env.DEVICE_MDNS_IF;

const device = child("device", JSON.parse(process.env.DEVICE_CMD ?? "[]"), "device.mjs", devEnv);
const ctl = child("controller", JSON.parse(process.env.CONTROLLER_CMD ?? "[]"), "controller.mjs", ctlEnv);

try {
    const ready = await device.next(l => l.event === "ready", 30_000);
    check(/^\d{11}$/.test(ready.manualPairingCode), "device prints an 11-digit manual pairing code", ready);
    await ctl.next(l => l.event === "ready", 30_000);
    check(true, "controller ready");

    // A well-formed code with the wrong passcode: PASE must fail, cleanly.
    let t = Date.now();
    const wrongPasscode = ready.passcode === 20202021 ? 20202022 : 20202021;
    const wrong = ManualPairingCodeCodec.encode({ discriminator: ready.discriminator, passcode: wrongPasscode });
    const refused = await ctl.send({ cmd: "commission", code: wrong, ip: deviceIp, port: devicePort }, 70_000);
    check(refused.ok === false && typeof refused.error === "string",
        `a wrong passcode is refused with an error (${Date.now() - t} ms)`, refused);
    if (process.env.SELFTEST_VERBOSE) console.log(`# wrong passcode: ${refused.error}`);

    t = Date.now();
    const com = await ctl.send({ cmd: "commission", code: ready.manualPairingCode, ip: deviceIp, port: devicePort }, 70_000);
    check(com.ok && com.node, `commission by manual code with knownAddress ${deviceIp}:${devicePort} (${Date.now() - t} ms)`, com);
    if (!com.ok) throw new Error("commissioning failed; nothing more to test");
    const node = com.node;

    t = Date.now();
    const parts = await ctl.send({ cmd: "parts", node });
    const labels = parts.endpoints?.map(e => e.nodeLabel).sort();
    check(parts.ok && parts.partsList.length === 2 && JSON.stringify(labels) === '["Hall","Kitchen"]'
        && parts.endpoints.every(e => e.reachable === true),
        `parts: 2 bridged endpoints with nodeLabel and reachable (${Date.now() - t} ms)`, parts);
    const byLabel = Object.fromEntries((parts.endpoints ?? []).map(e => [e.nodeLabel, e]));
    const kitchen = byLabel.Kitchen?.endpoint ?? ready.endpoints.light1;
    const hall = byLabel.Hall?.endpoint ?? ready.endpoints.light2;
    check(byLabel.Kitchen?.deviceTypes.includes(0x100) && byLabel.Hall?.deviceTypes.includes(0x101),
        "device types: On/Off Light (0x0100) and Dimmable Light (0x0101)", parts.endpoints);

    t = Date.now();
    const tog = await ctl.send({ cmd: "toggle", node, endpoint: kitchen });
    const devTog = await device.next(l => l.event === "change" && l.endpoint === "light1" && l.attribute === "onOff", 10_000).catch(e => e);
    check(tog.ok && tog.onOff === true && devTog.value === true, `toggle: controller reads on, device prints the change (${Date.now() - t} ms)`, { tog, devTog: String(devTog?.message ?? "") });

    t = Date.now();
    const lvl = await ctl.send({ cmd: "level", node, endpoint: hall, level: 42 });
    const devLvl = await device.next(l => l.event === "change" && l.endpoint === "light2" && l.attribute === "currentLevel", 10_000).catch(e => e);
    check(lvl.ok && lvl.currentLevel === 42 && devLvl.value === 42, `level 42: controller reads 42, device prints it (${Date.now() - t} ms)`, { lvl, devLvl: String(devLvl?.message ?? "") });

    const rd = await ctl.send({ cmd: "read", node, endpoint: hall, cluster: "onOff", attribute: "onOff" });
    check(rd.ok && rd.value === true, "read onOff.onOff: the level command switched the Hall light on", rd);
    const off = await ctl.send({ cmd: "off", node, endpoint: kitchen });
    check(off.ok && off.onOff === false, "off", off);

    const sub = await ctl.send({ cmd: "subscribe", node });
    check(sub.ok, "subscribe", sub);
    t = Date.now();
    const set = await device.send({ cmd: "set", light: "light2", onOff: false });
    check(set.ok, "device switches the Hall light off by itself", set);
    const ev = await ctl.next(l => l.event === "attribute" && l.endpoint === hall && l.attribute === "onOff" && l.value === false, 20_000).catch(e => e);
    check(ev.event === "attribute", `subscription reports the device's own change (${Date.now() - t} ms)`, String(ev?.message ?? ""));

    t = Date.now();
    const unreach = await device.send({ cmd: "set", light: "light1", reachable: false });
    const ev2 = await ctl.next(l => l.event === "attribute" && l.endpoint === kitchen && l.cluster === 0x39
        && l.attribute === "reachable" && l.value === false, 20_000).catch(e => e);
    check(unreach.ok && ev2.event === "attribute", `a light made unreachable on the device: the subscription reports reachable=false (${Date.now() - t} ms)`,
        { unreach, ev2: String(ev2?.message ?? "") });
    const partsU = await ctl.send({ cmd: "parts", node });
    check(partsU.endpoints?.find(e => e.endpoint === kitchen)?.reachable === false, "parts shows it unreachable", partsU);

    t = Date.now();
    const added = await device.send({ cmd: "add", light: "light3", label: "Porch" });
    const st1 = await ctl.next(l => l.event === "structure", 20_000).catch(e => e);
    const parts3 = await ctl.send({ cmd: "parts", node });
    check(added.ok && st1.event === "structure" && parts3.partsList?.length === 3
        && parts3.endpoints.some(e => e.nodeLabel === "Porch" && e.endpoint === added.number),
        `a bridged light added on the device: a structure event, and parts lists 3 (${Date.now() - t} ms)`,
        { added, st1: String(st1?.message ?? ""), parts3 });
    t = Date.now();
    const dropped = await device.send({ cmd: "drop", light: "light3" });
    const st2 = await ctl.next(l => l.event === "structure", 20_000).catch(e => e);
    const parts2 = await ctl.send({ cmd: "parts", node });
    check(dropped.ok && st2.event === "structure" && parts2.partsList?.length === 2,
        `the light removed again: a structure event, and parts lists 2 (${Date.now() - t} ms)`,
        { dropped, st2: String(st2?.message ?? ""), parts2 });

    const bad = await ctl.send({ cmd: "toggle", node, endpoint: 99 });
    check(bad.ok === false && /no endpoint/.test(bad.error), "an unknown endpoint is a clean error", bad);

    t = Date.now();
    const rm = await ctl.send({ cmd: "remove", node }, 30_000);
    const fabrics = await device.next(l => l.event === "fabrics" && l.count === 0, 10_000).catch(e => e);
    check(rm.ok && fabrics.count === 0, `remove decommissions: the device has no fabric left (${Date.now() - t} ms)`, { rm, fabrics: String(fabrics?.message ?? "") });
} catch (e) {
    check(false, `selftest aborted: ${e.message}`);
}

for (const c of [ctl, device]) {
    try { c.proc.stdin.write(JSON.stringify({ cmd: "quit" }) + "\n"); } catch { /* already gone */ }
}
const bounded = (p, ms) => Promise.race([p, new Promise(r => setTimeout(() => r("timeout"), ms))]);
for (const c of [ctl, device]) {
    const code = await bounded(c.exited, 8000);
    if (code === "timeout") { c.proc.kill("SIGKILL"); await c.exited; }
}
if (failures > 0 || process.env.SELFTEST_VERBOSE) {
    for (const c of [device, ctl]) {
        console.log(`# --- last stderr lines of ${c.name} ---`);
        for (const l of c.errLog.slice(-60)) console.log(`# ${l}`);
    }
}
if (!process.env.SELFTEST_DIR) rmSync(dir, { recursive: true, force: true });
console.log(`selftest: ${failures === 0 ? "passed" : `${failures} failed`} in ${since()}`);
process.exit(failures === 0 ? 0 : 1);
