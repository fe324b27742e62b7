"""Checks hearth's MQTT discovery configs with Home Assistant's own code.

Usage: validate.py FILE, where FILE holds one JSON object per line,
{"topic": ..., "payload": ...}, as a client subscribed to homeassistant/#
received them. Every non-empty config must pass what Home Assistant does on
receipt: the discovery topic pattern, abbreviation expansion, the origin
schema, and the platform's discovery schema.

Per-entity configs (homeassistant/<component>/<node>/<object>/config) go
through exactly that. Device-based configs (homeassistant/device/<id>/config,
Home Assistant 2024.11 and later) are split into one config per component
the way that release documents it: the shared options (availability, origin,
device, state and command topics, qos, encoding) are merged into each
component, `p` names its platform, and each is then checked like a
per-entity config. The Home Assistant installed here (see requirements.txt)
predates device-based discovery, so its wrapper is checked by these rules
(a light component must not carry the `color_mode` flag, which 2024.3 still
requires and later releases refuse),
and its components by Home Assistant's own schemas.

Prints one line per config and exits 1 if any is refused.
"""

import json
import re
import sys

# The mqtt component has an import cycle when loaded outside a running Home
# Assistant; loading this first breaks it.
import homeassistant.components.persistent_notification  # noqa: F401
from homeassistant.components.mqtt import binary_sensor, camera, light, switch
from homeassistant.components.mqtt.abbreviations import (
    ABBREVIATIONS,
    DEVICE_ABBREVIATIONS,
    ORIGIN_ABBREVIATIONS,
)
from homeassistant.components.mqtt.discovery import MQTT_ORIGIN_INFO_SCHEMA
from homeassistant.const import __version__

SCHEMAS = {
    "light": light.DISCOVERY_SCHEMA,
    "switch": switch.DISCOVERY_SCHEMA,
    "binary_sensor": binary_sensor.DISCOVERY_SCHEMA,
    "camera": camera.DISCOVERY_SCHEMA,
}
# Home Assistant's own pattern for a discovery topic (after the prefix).
ENTITY_TOPIC = re.compile(r"^(\w+)/(?:([a-zA-Z0-9_-]+)/)?([a-zA-Z0-9_-]+)/config$")
DEVICE_TOPIC = re.compile(r"^device/([a-zA-Z0-9_-]+)/config$")
SHARED = {
    "availability",
    "availability_topic",
    "availability_mode",
    "payload_available",
    "payload_not_available",
    "availability_template",
    "command_topic",
    "state_topic",
    "qos",
    "encoding",
}


def expand(config, table):
    return {table.get(k, k): v for k, v in config.items()}


def check_entity(component, config):
    """What Home Assistant does with one entity's discovery payload."""
    if component not in SCHEMAS:
        raise ValueError(f"platform {component} is not one hearth should send")
    config = expand(config, ABBREVIATIONS)
    # Without the `color_mode` flag, a JSON light is for 2024.4 and later,
    # which no longer need it beside supported_color_modes; the 2024.3
    # schema here still does, so it is added for the check. Legacy configs
    # carry it themselves.
    if component == "light" and "supported_color_modes" in config:
        config.setdefault("color_mode", True)
    if "device" in config:
        config["device"] = expand(config["device"], DEVICE_ABBREVIATIONS)
    if "origin" in config:
        config["origin"] = expand(config["origin"], ORIGIN_ABBREVIATIONS)
        MQTT_ORIGIN_INFO_SCHEMA(config["origin"])
    if "unique_id" not in config:
        raise ValueError("no unique_id")
    SCHEMAS[component](config)


def split_device(config):
    """A device-based payload, as one config per component."""
    config = expand(config, ABBREVIATIONS)
    for required in ("device", "origin"):
        if required not in config:
            raise ValueError(f"a device config needs {required}")
    components = config.get("components", config.get("cmps"))
    if not isinstance(components, dict) or not components:
        raise ValueError("a device config needs components")
    shared = {k: v for k, v in config.items() if k in SHARED}
    for object_id, component in components.items():
        component = expand(component, ABBREVIATIONS)
        platform = component.pop("platform", component.pop("p", None))
        if platform is None:
            raise ValueError(f"component {object_id} has no platform")
        merged = {**shared, **component}
        # Device configs are read by 2024.11 and later, where a JSON light's
        # `color_mode` flag is no longer needed (gone since 2024.4, an error
        # since 2025.3), so hearth leaves it out; the 2024.3 schema checking
        # the component here still requires it beside supported_color_modes.
        if platform == "light" and "color_mode" in merged:
            raise ValueError("a device config's light carries the removed color_mode flag")
        merged["device"] = config["device"]
        merged["origin"] = config["origin"]
        yield object_id, platform, merged


def main(path):
    prefix = "homeassistant/"
    bad = 0
    count = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            msg = json.loads(line)
            topic, payload = msg["topic"], msg["payload"]
            if not payload or not topic.startswith(prefix) or not topic.endswith("/config"):
                continue
            rest = topic[len(prefix):]
            try:
                config = json.loads(payload)
                if m := DEVICE_TOPIC.match(rest):
                    for object_id, platform, merged in split_device(config):
                        check_entity(platform, merged)
                        count += 1
                        print(f"ok {topic} {object_id} ({platform})")
                elif m := ENTITY_TOPIC.match(rest):
                    check_entity(m.group(1), config)
                    count += 1
                    print(f"ok {topic}")
                else:
                    raise ValueError("not a discovery topic Home Assistant reads")
            except Exception as e:  # every refusal is reported, not raised
                bad += 1
                print(f"REFUSED {topic}: {type(e).__name__}: {e}")
    print(f"{count} entities valid, {bad} refused, Home Assistant {__version__}")
    return 1 if bad or not count else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
