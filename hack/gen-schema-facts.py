#!/usr/bin/env python3
"""Regenerate common/src/schema/facts.json from the upstream API facts.

Usage: hack/gen-schema-facts.py [API_FACTS_JSON] [OUTPUT_JSON]

Defaults (relative to the repository root): ../shared/reference/api-facts.json and
common/src/schema/facts.json. Only the facts that strategic merge patch and OpenAPI
publishing consume are kept, under short keys, so the generated file stays small enough
to embed in the binary with include_str!.

Output layout (one object per definition, keyed by its full OpenAPI name):
  g   group-version-kind list, each entry [group, version, kind]
  t   the definition's own type, when it declares one (e.g. Quantity is a string)
  m   the definition's x-kubernetes-map-type
  p   properties, each either a bare type name (a scalar with nothing else to say) or:
        t   type ("array", "object", "string", ...), absent for a bare $ref
        r   $ref target of the property itself
        i   $ref target of the array items
        v   $ref target of the map values (additionalProperties)
        e   primitive type of the array items or map values
        s   x-kubernetes-patch-strategy (comma-separated as upstream writes it)
        k   x-kubernetes-patch-merge-key
        l   x-kubernetes-list-type
        lk  x-kubernetes-list-map-keys
        m   x-kubernetes-map-type
"""

import json
import os
import sys

REF_PREFIX = "#/definitions/"

EXTENSIONS = (
    ("x-kubernetes-patch-strategy", "s"),
    ("x-kubernetes-patch-merge-key", "k"),
    ("x-kubernetes-list-type", "l"),
    ("x-kubernetes-list-map-keys", "lk"),
    ("x-kubernetes-map-type", "m"),
)


def ref_target(schema):
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    if not isinstance(ref, str):
        return None
    if not ref.startswith(REF_PREFIX):
        raise SystemExit(f"unsupported $ref form: {ref}")
    return ref[len(REF_PREFIX):]


def compact_property(prop):
    out = {}
    if "type" in prop:
        out["t"] = prop["type"]
    target = ref_target(prop)
    if target:
        out["r"] = target
    items = prop.get("items")
    if isinstance(items, dict):
        target = ref_target(items)
        if target:
            out["i"] = target
        elif "type" in items:
            out["e"] = items["type"]
    values = prop.get("additionalProperties")
    if isinstance(values, dict):
        target = ref_target(values)
        if target:
            out["v"] = target
        elif "type" in values:
            out["e"] = values["type"]
    for ext, key in EXTENSIONS:
        if ext in prop:
            out[key] = prop[ext]
    # Most properties are plain scalars; spelling those as the bare type name keeps the
    # embedded table noticeably smaller.
    if list(out) == ["t"] and isinstance(out["t"], str):
        return out["t"]
    return out


def compact_definition(defn):
    out = {}
    gvks = defn.get("x-kubernetes-group-version-kind")
    if gvks:
        out["g"] = [[g.get("group", ""), g["version"], g["kind"]] for g in gvks]
    if "type" in defn:
        out["t"] = defn["type"]
    if "x-kubernetes-map-type" in defn:
        out["m"] = defn["x-kubernetes-map-type"]
    props = defn.get("properties") or {}
    out["p"] = {name: compact_property(prop) for name, prop in sorted(props.items())}
    return out


def main(argv):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = argv[1] if len(argv) > 1 else os.path.join(repo, "..", "shared", "reference", "api-facts.json")
    dst = argv[2] if len(argv) > 2 else os.path.join(repo, "common", "src", "schema", "facts.json")

    with open(src, encoding="utf-8") as f:
        facts = json.load(f)
    definitions = facts.get("definitions")
    if not isinstance(definitions, dict) or not definitions:
        raise SystemExit(f"{src}: no definitions found")

    out = {name: compact_definition(defn) for name, defn in sorted(definitions.items())}

    # Every $ref must land on a definition we emit; a dangling one would silently turn a
    # typed subtree into a schemaless one at patch time.
    for name, defn in out.items():
        for prop_name, prop in defn["p"].items():
            for key in ("r", "i", "v"):
                if isinstance(prop, dict) and key in prop and prop[key] not in out:
                    raise SystemExit(f"{name}.{prop_name}: dangling reference {prop[key]}")

    text = json.dumps(out, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(dst, "w", encoding="utf-8") as f:
        f.write(text)
        f.write("\n")
    print(f"wrote {dst}: {len(out)} definitions, {len(text)} bytes")


if __name__ == "__main__":
    main(sys.argv)
