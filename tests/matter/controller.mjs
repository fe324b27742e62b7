// A Matter controller (matter.js's CommissioningController) driven over JSON
// lines, so hearth's Rust tests can commission and operate hearth's bridge
// with a peer nobody on the project wrote, one bounded step at a time.
//
// stdin:  one JSON command per line, e.g. {"cmd":"toggle","node":"1","endpoint":2}
//         (an optional "id" is echoed back in the answer).
// stdout: JSON lines only: one answer per command, {"ok":true,...} or
//         {"ok":false,"error":"..."}, and, after `subscribe`, unsolicited
//         {"event":"attribute",...} and {"event":"structure",...} lines.
// stderr: matter.js's own log (level from MATTER_LOG_LEVEL, default "info").
//
// Environment: MATTER_STORAGE_PATH (required: a fresh temp dir, so no test
// ever touches ~/.matter), MATTER_MDNS_NETWORKINTERFACE (optional: pin mDNS
// to one interface), MATTER_FABRIC_LABEL (default "hearth test"), COMMISSION_TIMEOUT_MS (default 60000), OP_TIMEOUT_MS
// (default 15000).

// matter.js logs through console; stdout belongs to the protocol.
console.log = console.info = console.debug = console.error;

import { createInterface } from "node:readline";
import { Environment, Logger } from "@matter/main";
import { GeneralCommissioning } from "@matter/main/clusters";
import { ClusterId, EndpointNumber, ManualPairingCodeCodec, NodeId } from "@matter/main/types";
import { CommissioningController } from "@project-chip/matter.js";
import { NodeStates } from "@project-chip/matter.js/device";

if (!process.env.MATTER_STORAGE_PATH) {
    process.stderr.write("controller: MATTER_STORAGE_PATH must name a temp dir\n");
    process.exit(64);
}
Logger.level = process.env.MATTER_LOG_LEVEL ?? "info";

const COMMISSION_TIMEOUT_MS = Number(process.env.COMMISSION_TIMEOUT_MS ?? 60_000);
const OP_TIMEOUT_MS = Number(process.env.OP_TIMEOUT_MS ?? 15_000);

const CLUSTER = { descriptor: 0x1d, onOff: 0x06, levelControl: 0x08, bridgedDeviceBasicInformation: 0x39 };
const AGGREGATOR_DEVICE_TYPE = 0x0e;

// Matter values include bigints (node ids, fabric ids) and byte strings.
function replacer(_key, value) {
    if (typeof value === "bigint") return value.toString();
    if (value instanceof Uint8Array) return Buffer.from(value).toString("hex");
    return value;
}
const emit = obj => process.stdout.write(JSON.stringify(obj, replacer) + "\n");

function withTimeout(promise, ms, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms / 1000} s`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const controller = new CommissioningController({
    environment: { environment: Environment.default, id: "hearth-test-controller" },
    autoConnect: false,
    adminFabricLabel: process.env.MATTER_FABRIC_LABEL ?? "hearth test",
});
await controller.start();

// Node id (string) -> whether its changes are streamed to stdout.
const subscribed = new Set();
const wired = new Set();

function nodeIdOf(msg) {
    if (msg.node === undefined) throw new Error("missing node");
    return NodeId(BigInt(msg.node));
}

// The PairedNode, connected (matter.js subscribes to everything on connect).
async function pairedNode(msg) {
    const nodeId = nodeIdOf(msg);
    if (!controller.isNodeCommissioned(nodeId)) throw new Error(`node ${msg.node} is not commissioned`);
    const node = await controller.getNode(nodeId);
    const key = nodeId.toString();
    if (!wired.has(key)) {
        wired.add(key);
        node.events.attributeChanged.on(({ path, value }) => {
            if (!subscribed.has(key)) return;
            emit({
                event: "attribute", node: key, endpoint: path.endpointId, cluster: path.clusterId,
                attribute: path.attributeName, attributeId: path.attributeId, value,
            });
        });
        node.events.structureChanged.on(() => {
            if (subscribed.has(key)) emit({ event: "structure", node: key });
        });
        node.events.stateChanged.on(state => {
            if (subscribed.has(key)) emit({ event: "state", node: key, state: NodeStates[state] ?? state });
        });
    }
    if (!node.isConnected) {
        node.connect();
    }
    if (!node.initialized) await node.events.initialized;
    return node;
}

function endpointOf(node, number) {
    if (number === undefined) throw new Error("missing endpoint");
    const ep = number === 0 ? node.getRootEndpoint() : node.getDeviceById(number);
    if (!ep) throw new Error(`node has no endpoint ${number}`);
    return ep;
}

function clusterOf(ep, cluster) {
    const id = typeof cluster === "number" ? cluster : CLUSTER[cluster] ?? undefined;
    let client = id !== undefined ? ep.getClusterClientById(ClusterId(id)) : undefined;
    if (!client && typeof cluster === "string") {
        client = ep.getAllClusterClients().find(c => c.name.toLowerCase() === cluster.toLowerCase());
    }
    if (!client) throw new Error(`endpoint ${ep.number} has no cluster ${cluster}`);
    return client;
}

// Always from the device, never matter.js's cache (which can be stale).
async function readAttr(ep, cluster, attribute) {
    const client = clusterOf(ep, cluster);
    const attr = client.attributes[attribute];
    if (!attr) throw new Error(`cluster ${client.name} has no attribute ${attribute}`);
    return attr.get(true);
}

async function describe(node, number) {
    const ep = endpointOf(node, number);
    const out = { endpoint: number };
    const types = await readAttr(ep, "descriptor", "deviceTypeList");
    out.deviceTypes = types.map(t => t.deviceType);
    if (ep.getClusterClientById(ClusterId(CLUSTER.bridgedDeviceBasicInformation))) {
        out.nodeLabel = await readAttr(ep, "bridgedDeviceBasicInformation", "nodeLabel");
        out.reachable = await readAttr(ep, "bridgedDeviceBasicInformation", "reachable");
    }
    return out;
}

const handlers = {
    async commission(msg) {
        if (!msg.code) throw new Error("missing code");
        const { passcode, shortDiscriminator } = ManualPairingCodeCodec.decode(String(msg.code).replace(/-/g, ""));
        const discovery = {
            identifierData: { shortDiscriminator },
            discoveryCapabilities: { onIpNetwork: true },
        };
        if (msg.ip) discovery.knownAddress = { type: "udp", ip: msg.ip, port: msg.port ?? 5540 };
        const started = Date.now();
        const nodeId = await controller.commissionNode({
            commissioning: {
                regulatoryLocation: GeneralCommissioning.RegulatoryLocationType.IndoorOutdoor,
                regulatoryCountryCode: "XX",
            },
            discovery,
            passcode,
        });
        const key = nodeId.toString();
        await pairedNode({ node: key });
        return { node: key, ms: Date.now() - started };
    },

    async parts(msg) {
        const node = await pairedNode(msg);
        const root = node.getRootEndpoint();
        const rootParts = await readAttr(root, "descriptor", "partsList");
        let aggregator;
        for (const n of rootParts) {
            const types = await readAttr(endpointOf(node, n), "descriptor", "deviceTypeList");
            if (types.some(t => t.deviceType === AGGREGATOR_DEVICE_TYPE)) { aggregator = n; break; }
        }
        if (aggregator === undefined) return { aggregator: null, partsList: [], endpoints: [] };
        const partsList = await readAttr(endpointOf(node, aggregator), "descriptor", "partsList");
        const endpoints = [];
        for (const n of partsList) endpoints.push(await describe(node, n));
        return { aggregator, partsList, endpoints };
    },

    async toggle(msg) {
        const ep = endpointOf(await pairedNode(msg), msg.endpoint);
        await clusterOf(ep, "onOff").commands.toggle();
        return { onOff: await readAttr(ep, "onOff", "onOff") };
    },
    async on(msg) {
        const ep = endpointOf(await pairedNode(msg), msg.endpoint);
        await clusterOf(ep, "onOff").commands.on();
        return { onOff: await readAttr(ep, "onOff", "onOff") };
    },
    async off(msg) {
        const ep = endpointOf(await pairedNode(msg), msg.endpoint);
        await clusterOf(ep, "onOff").commands.off();
        return { onOff: await readAttr(ep, "onOff", "onOff") };
    },
    async level(msg) {
        if (!Number.isInteger(msg.level) || msg.level < 0 || msg.level > 254) throw new Error("level must be 0..254");
        const ep = endpointOf(await pairedNode(msg), msg.endpoint);
        // Like a dimmer slider: setting a level also switches the light on
        // (moveToLevelWithOnOff). A plain moveToLevel on an Off light is
        // ignored by a compliant device unless its ExecuteIfOff option is set.
        const command = msg.withOnOff === false ? "moveToLevel" : "moveToLevelWithOnOff";
        await clusterOf(ep, "levelControl").commands[command]({
            level: msg.level, transitionTime: null, optionsMask: {}, optionsOverride: {},
        });
        return { currentLevel: await readAttr(ep, "levelControl", "currentLevel") };
    },
    async read(msg) {
        if (!msg.cluster || !msg.attribute) throw new Error("missing cluster or attribute");
        const ep = endpointOf(await pairedNode(msg), msg.endpoint);
        return { value: await readAttr(ep, msg.cluster, msg.attribute) };
    },
    async subscribe(msg) {
        const node = await pairedNode(msg);
        subscribed.add(node.nodeId.toString());
        return { node: node.nodeId.toString() };
    },
    async remove(msg) {
        const nodeId = nodeIdOf(msg);
        subscribed.delete(nodeId.toString());
        await controller.removeNode(nodeId, true);
        return { node: nodeId.toString() };
    },
    async nodes() {
        return { nodes: controller.getCommissionedNodes().map(n => n.toString()) };
    },
};

let closing = false;
async function shutdown(code) {
    if (closing) return;
    closing = true;
    setTimeout(() => process.exit(code), 5000).unref();
    try { await controller.close(); } catch { /* exiting anyway */ }
    process.exit(code);
}
process.on("SIGTERM", () => shutdown(0));
process.on("SIGINT", () => shutdown(0));

emit({ event: "ready" });
const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
    if (!line.trim()) continue;
    let msg;
    try {
        msg = JSON.parse(line);
    } catch {
        emit({ ok: false, error: "not JSON" });
        continue;
    }
    const echo = msg.id !== undefined ? { id: msg.id } : {};
    if (msg.cmd === "quit") {
        emit({ ok: true, ...echo });
        await shutdown(0);
    }
    const handler = handlers[msg.cmd];
    if (!handler) {
        emit({ ok: false, ...echo, error: `unknown cmd ${msg.cmd}` });
        continue;
    }
    const ms = msg.cmd === "commission" ? COMMISSION_TIMEOUT_MS : OP_TIMEOUT_MS;
    try {
        const result = await withTimeout(handler(msg), ms, msg.cmd);
        emit({ ok: true, ...echo, ...result });
    } catch (e) {
        emit({ ok: false, ...echo, error: String(e?.message ?? e) });
    }
}
await shutdown(0);
