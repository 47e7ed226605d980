#!/usr/bin/env python3
"""Kubernetes JSON schemas for kubeconform, made from the OpenAPI v3 documents the Kubernetes
source ships (api/openapi-spec/v3, the k8s.io/kubernetes Go module) and from CRD manifests
(the ServiceMonitor's, from the prometheus-operator Go module), so validation needs no GitHub.

    k8s_json_schemas.py OPENAPI_V3_DIR OUT_DIR [CRD.yaml ...]

Writes OUT_DIR/<kind>-<group>-<version>.json (core kinds: <kind>-<version>.json), the layout of
kubeconform's `{{ .ResourceKind }}{{ .KindSuffix }}.json`: each schema standalone (references
inlined) and strict (objects with listed properties allow no others), as `kubeconform -strict`
expects. int-or-string and quantities accept numbers or strings; optional fields accept null, as
the API server does.
"""

import json
import os
import sys

REF_PREFIX = "#/components/schemas/"
# Keywords kept; the rest (descriptions, defaults, formats, x-kubernetes-* hints) do not
# constrain a manifest the way kubeconform reads it.
KEEP = {"type", "properties", "items", "required", "additionalProperties", "enum", "oneOf",
        "anyOf", "allOf", "minimum", "maximum", "minLength", "maxLength", "minItems",
        "maxItems", "pattern"}


def file_name(group, version, kind):
    first = group.split(".")[0].lower() if group else ""
    suffix = f"-{first}-{version}" if first else f"-{version}"
    return f"{kind.lower()}{suffix.lower()}.json"


class Converter:
    def __init__(self, schemas):
        self.schemas = schemas

    def convert(self, node, chain=()):
        """A standalone, strict copy of `node`; `chain` holds the references being expanded
        (a recursive type, such as a CRD's JSONSchemaProps, becomes `{}` where it recurs)."""
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            name = node["$ref"][len(REF_PREFIX):]
            if name in chain:
                return {}
            return self.convert(self.schemas[name], chain + (name,))
        # `allOf: [{$ref}]` is how the v3 documents attach a description or default to a type.
        if "allOf" in node and len(node["allOf"]) == 1:
            merged = {k: v for k, v in node.items() if k != "allOf"}
            inner = self.convert(node["allOf"][0], chain)
            return {**inner, **{k: self.convert_value(k, v, chain)
                                for k, v in merged.items() if k in KEEP}}
        if node.get("x-kubernetes-int-or-string") or node.get("format") == "int-or-string":
            return {"oneOf": [{"type": "integer"}, {"type": "string"}]}
        out = {}
        for key, value in node.items():
            if key in KEEP:
                out[key] = self.convert_value(key, value, chain)
        if node.get("nullable"):
            out = {"anyOf": [out, {"type": "null"}]}
        strict = ("properties" in out and "additionalProperties" not in out
                  and not node.get("x-kubernetes-preserve-unknown-fields"))
        if strict:
            out["additionalProperties"] = False
        return out

    def convert_value(self, key, value, chain):
        if key == "properties":
            return {name: self.convert(prop, chain) for name, prop in value.items()}
        if key in ("items", "additionalProperties") and isinstance(value, dict):
            return self.convert(value, chain)
        if key in ("oneOf", "anyOf", "allOf"):
            return [self.convert(v, chain) for v in value]
        return value


def optional_null(schema, required=()):
    """Optional properties may be null (the API server takes null for an omitted field)."""
    if not isinstance(schema, dict):
        return schema
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = optional_null(schema[key])
    for key in ("oneOf", "anyOf", "allOf"):
        if key in schema:
            schema[key] = [optional_null(s) for s in schema[key]]
    props = schema.get("properties")
    if props:
        needed = set(schema.get("required", ()))
        for name, prop in props.items():
            prop = optional_null(prop)
            if name not in needed and "type" in prop and isinstance(prop["type"], str):
                prop = dict(prop, type=[prop["type"], "null"])
            props[name] = prop
    return schema


def top_level(schema, group, version, kind):
    api_version = f"{group}/{version}" if group else version
    schema = dict(schema)
    props = dict(schema.get("properties", {}))
    props["apiVersion"] = {"type": "string", "enum": [api_version]}
    props["kind"] = {"type": "string", "enum": [kind]}
    schema["properties"] = props
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind"})
    schema["$schema"] = "http://json-schema.org/schema#"
    return schema


def write(out_dir, group, version, kind, schema):
    path = os.path.join(out_dir, file_name(group, version, kind))
    with open(path, "w") as f:
        json.dump(schema, f, separators=(",", ":"), sort_keys=True)


def from_openapi(spec_dir, out_dir):
    count = 0
    for name in sorted(os.listdir(spec_dir)):
        if not name.endswith("_openapi.json"):
            continue
        with open(os.path.join(spec_dir, name)) as f:
            schemas = json.load(f).get("components", {}).get("schemas", {})
        converter = Converter(schemas)
        for type_name, schema in schemas.items():
            gvks = schema.get("x-kubernetes-group-version-kind", [])
            # Types listed under several kinds (DeleteOptions, WatchEvent) are no resource.
            if len(gvks) != 1:
                continue
            gvk = gvks[0]
            standalone = optional_null(converter.convert(schema, (type_name,)))
            write(out_dir, gvk["group"], gvk["version"], gvk["kind"],
                  top_level(standalone, gvk["group"], gvk["version"], gvk["kind"]))
            count += 1
    return count


def from_crd(path, out_dir, object_meta):
    import yaml  # only for CRDs

    with open(path) as f:
        crd = yaml.safe_load(f)
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    count = 0
    for version in crd["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        converted = Converter({}).convert(schema)
        if object_meta is not None:
            converted.setdefault("properties", {})["metadata"] = object_meta
        converted = optional_null(converted)
        write(out_dir, group, version["name"], kind,
              top_level(converted, group, version["name"], kind))
        count += 1
    return count


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    spec_dir, out_dir, crds = sys.argv[1], sys.argv[2], sys.argv[3:]
    os.makedirs(out_dir, exist_ok=True)
    count = from_openapi(spec_dir, out_dir)
    # A CRD's schema leaves metadata open; give it the core ObjectMeta.
    with open(os.path.join(spec_dir, "api__v1_openapi.json")) as f:
        core = json.load(f)["components"]["schemas"]
    meta_name = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    object_meta = optional_null(Converter(core).convert(core[meta_name], (meta_name,)))
    for crd in crds:
        count += from_crd(crd, out_dir, object_meta)
    if count == 0:
        sys.exit(f"no resource schemas found under {spec_dir}")
    print(f"{count} schemas in {out_dir}")


if __name__ == "__main__":
    main()
