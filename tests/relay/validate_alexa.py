"""Validates Alexa messages against hearth's schema of them.

Usage: validate_alexa.py SCHEMA MESSAGES

MESSAGES is a JSON array of the answers the relay gave. Every one must
validate; each failure is printed with its index and path. Before that,
a control: the first answer with a state property (or a built-in
StateReport when none has one) must fail once its timeOfSample carries
nine fractional digits, so that a schema that has lost its timestamp rule
cannot pass everything. The last line is
"<n> valid".
"""

import copy
import json
import sys

import jsonschema

# A StateReport as hearth writes one, for the control when the answers
# carry no state property of their own.
CONTROL = {
    "event": {
        "header": {
            "namespace": "Alexa",
            "name": "StateReport",
            "payloadVersion": "3",
            "messageId": "0a1b2c3d-0000-4000-8000-000000000000",
            "correlationToken": "control",
        },
        "endpoint": {"endpointId": "0123456789abcdef0123456789abcdef"},
        "payload": {},
    },
    "context": {
        "properties": [
            {
                "namespace": "Alexa.PowerController",
                "name": "powerState",
                "value": "ON",
                "timeOfSample": "2026-12-06T12:00:00.123Z",
                "uncertaintyInMilliseconds": 0,
            }
        ]
    },
}


def main() -> int:
    schema_path, messages_path = sys.argv[1], sys.argv[2]
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    with open(messages_path, encoding="utf-8") as f:
        messages = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)

    with_state = [m for m in messages if m.get("context", {}).get("properties")]
    control = copy.deepcopy(with_state[0]) if with_state else CONTROL
    good = control["context"]["properties"][0]["timeOfSample"]
    control["context"]["properties"][0]["timeOfSample"] = "2026-12-06T12:00:00.123456789Z"
    if validator.is_valid(control):
        print("control: a nine-digit timeOfSample passed; the schema lost its rule")
        return 1
    control["context"]["properties"][0]["timeOfSample"] = good
    if not with_state and not validator.is_valid(control):
        print("control: the built-in StateReport does not pass")
        return 1

    failed = 0
    for i, message in enumerate(messages):
        errors = sorted(validator.iter_errors(message), key=lambda e: list(e.absolute_path))
        if errors:
            failed += 1
            name = message.get("event", {}).get("header", {}).get("name", "?")
            print(f"message {i} ({name}) is invalid:")
            for e in errors:
                where = "/".join(str(p) for p in e.absolute_path)
                print(f"  at /{where}: {e.message}")
                for sub in sorted(e.context or [], key=lambda s: list(s.absolute_path))[:8]:
                    subwhere = "/".join(str(p) for p in sub.absolute_path)
                    print(f"    - at /{subwhere}: {sub.message}")
            print(f"  {json.dumps(message)}")
    if failed:
        print(f"{failed} of {len(messages)} invalid")
        return 1
    print(f"{len(messages)} valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
