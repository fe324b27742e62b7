// A Matter bridge played by matter.js: an Aggregator with two bridged lights
// (one On/Off, one Dimmable). It exists only to prove controller.mjs against
// a Matter device nobody on the project wrote; hearth's own tests never use it.
//
// stdout carries JSON lines only:
//   {"event":"ready","manualPairingCode":"...","passcode":N,"discriminator":N,"port":N}
//   {"event":"change","endpoint":"light1","attribute":"onOff","value":true}
// stdin takes JSON lines, to change a light from the device's own side:
//   {"cmd":"set","light":"light1","onOff":true}
//   {"cmd":"set","light":"light2","level":42}
//   {"cmd":"set","light":"light1","reachable":false}
//   {"cmd":"add","light":"light3","label":"Porch"}   (a third On/Off light: PartsList grows)
//   {"cmd":"drop","light":"light3"}                  (PartsList shrinks)
//   {"cmd":"quit"}
// Environment: MATTER_STORAGE_PATH (a fresh temp dir), DEVICE_PORT (UDP,
// default 5540), MATTER_LOG_LEVEL (matter.js's own, to stderr).

// matter.js logs through console; stdout belongs to the protocol.
console.log = console.info = console.debug = console.error;

import { randomInt } from "node:crypto";
import { createInterface } from "node:readline";
import { Endpoint, ServerNode, VendorId } from "@matter/main";
import { BridgedDeviceBasicInformationServer } from "@matter/main/behaviors/bridged-device-basic-information";
import { DimmableLightDevice } from "@matter/main/devices/dimmable-light";
import { OnOffLightDevice } from "@matter/main/devices/on-off-light";
import { AggregatorEndpoint } from "@matter/main/endpoints/aggregator";

const emit = obj => process.stdout.write(JSON.stringify(obj) + "\n");

// Passcodes the spec forbids (5.1.7.1): all-same digits and the two sequences.
const FORBIDDEN = new Set([0, 11111111, 22222222, 33333333, 44444444, 55555555, 66666666, 77777777,
    88888888, 99999999, 12345678, 87654321]);
let passcode;
do passcode = randomInt(1, 99999999); while (FORBIDDEN.has(passcode));
const discriminator = randomInt(0, 4096);
const port = Number(process.env.DEVICE_PORT ?? 5540);

const node = await ServerNode.create({
    id: "selftest-bridge",
    network: { port },
    commissioning: { passcode, discriminator },
    productDescription: { name: "selftest bridge", deviceType: AggregatorEndpoint.deviceType },
    basicInformation: {
        vendorName: "hearth selftest",
        vendorId: VendorId(0xfff1),
        productName: "matter.js bridge",
        productId: 0x8000,
        nodeLabel: "selftest bridge",
        serialNumber: `selftest-${discriminator}`,
        uniqueId: `selftest-${passcode}`,
    },
});

const aggregator = new Endpoint(AggregatorEndpoint, { id: "aggregator" });
await node.add(aggregator);

const lights = {
    light1: new Endpoint(OnOffLightDevice.with(BridgedDeviceBasicInformationServer), {
        id: "light1",
        bridgedDeviceBasicInformation: { nodeLabel: "Kitchen", reachable: true, uniqueId: "selftest-light1" },
    }),
    light2: new Endpoint(DimmableLightDevice.with(BridgedDeviceBasicInformationServer), {
        id: "light2",
        bridgedDeviceBasicInformation: { nodeLabel: "Hall", reachable: true, uniqueId: "selftest-light2" },
    }),
};
for (const [id, ep] of Object.entries(lights)) {
    await aggregator.add(ep);
    ep.events.onOff.onOff$Changed.on(value => emit({ event: "change", endpoint: id, number: ep.number, attribute: "onOff", value }));
    if (id === "light2") {
        ep.events.levelControl.currentLevel$Changed.on(value =>
            emit({ event: "change", endpoint: id, number: ep.number, attribute: "currentLevel", value }));
    }
}

node.events.commissioning.fabricsChanged.on(() => emit({ event: "fabrics", count: node.state.operationalCredentials.fabrics.length }));

await node.start();
const { manualPairingCode, qrPairingCode } = node.state.commissioning.pairingCodes;
emit({
    event: "ready", manualPairingCode, qrPairingCode, passcode, discriminator, port,
    endpoints: Object.fromEntries(Object.entries(lights).map(([id, ep]) => [id, ep.number])),
});

const rl = createInterface({ input: process.stdin });
let quitting = false;
async function quit(code) {
    if (quitting) return;
    quitting = true;
    const timer = setTimeout(() => process.exit(code), 5000);
    timer.unref();
    try { await node.close(); } catch { /* exiting anyway */ }
    process.exit(code);
}
rl.on("close", () => quit(0));
process.on("SIGTERM", () => quit(0));
process.on("SIGINT", () => quit(0));
for await (const line of rl) {
    if (!line.trim()) continue;
    try {
        const msg = JSON.parse(line);
        if (msg.cmd === "quit") { emit({ ok: true }); await quit(0); }
        else if (msg.cmd === "set") {
            const ep = lights[msg.light];
            if (!ep) throw new Error(`no light ${msg.light}`);
            const patch = {};
            if (msg.onOff !== undefined) patch.onOff = { onOff: !!msg.onOff };
            if (msg.level !== undefined) patch.levelControl = { currentLevel: msg.level };
            if (msg.reachable !== undefined) patch.bridgedDeviceBasicInformation = { reachable: !!msg.reachable };
            await ep.set(patch);
            emit({ ok: true });
        } else if (msg.cmd === "add") {
            if (!/^light\d+$/.test(msg.light ?? "") || lights[msg.light]) throw new Error(`bad or existing light ${msg.light}`);
            const ep = new Endpoint(OnOffLightDevice.with(BridgedDeviceBasicInformationServer), {
                id: msg.light,
                bridgedDeviceBasicInformation: { nodeLabel: msg.label ?? msg.light, reachable: true, uniqueId: `selftest-${msg.light}` },
            });
            await aggregator.add(ep);
            lights[msg.light] = ep;
            emit({ ok: true, number: ep.number });
        } else if (msg.cmd === "drop") {
            const ep = lights[msg.light];
            if (!ep) throw new Error(`no light ${msg.light}`);
            delete lights[msg.light];
            await ep.delete();
            emit({ ok: true });
        } else throw new Error(`unknown cmd ${msg.cmd}`);
    } catch (e) {
        emit({ ok: false, error: String(e?.message ?? e) });
    }
}
