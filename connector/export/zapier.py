"""Zapier CLI integration, generated from the manifests.

``render(manifests)`` returns ``{file name: text}``: ``package.json`` (pinning
``zapier-platform-core``), ``index.js``, ``integration.json`` (the integration as plain JSON;
not ``definition.json``, which ``zapier-platform build`` overwrites with its own serialisation),
``.gitignore`` and the integration's own tests (``test/*.test.js``, the style ``zapier init``
generates: jest and ``createAppTester``) that run the auth test, every trigger and every search
against a live service with the credentials in the app folder's ``.env``
(``authData_<field>=...``, the file ``zapier-platform invoke`` reads).

Requests are request objects templated with ``{{bundle.…}}`` where Zapier can use the
response as it is; where a result must be reshaped (a search returns an array, an
unsubscribe answers 204 without a body) the definition holds a ``{"source": …}`` function
that ``zapier-platform-core`` compiles (and ``index.js`` too, so the tests can name it).
Shared headers (caller key, provider, provider key, request source) live once in
``requestTemplate``; every body also says ``requestSource: ZAPIER``.

- every trigger manifest gives a polling trigger (its route, bare array with ``id``s) and,
  when it has ``hooks``, an instant REST-hook trigger ``<key>_instant`` whose ``perform``
  checks each delivery's Standard Webhooks signature with the secret the subscription
  returned and drops (returns ``[]``) a delivery that fails;
- every action manifest gives a search (``[result]``) or a create (``result``), per
  ``platforms.zapier.type``; a paged result keeps its records as line items.
"""

from __future__ import annotations

import json

from .common import (PROVIDER_NAMES, as_data, dump_json, example_value, flat_key, hook_inputs, platform_type,
                     user_inputs)

__all__ = ["JEST_VERSION", "ZAPIER_CORE_VERSION", "build", "render"]

ZAPIER_CORE_VERSION = "19.1.0"
JEST_VERSION = "29.7.0"
APP_VERSION = "1.0.0"
DEFINITION_FILE = "integration.json"
SERVICE_URL = "{{bundle.authData.serviceUrl}}"

INPUT_TYPES = {"string": "string", "integer": "integer", "boolean": "boolean", "cursor": "string",
               "enum": "string"}
OUTPUT_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean",
                "datetime": "datetime"}

# The service's base URL without a trailing slash, in generated function sources.
JS_BASE = "const base = String(bundle.authData.serviceUrl || '').trim().replace(/\\/+$/, '');\n"


def _js(value) -> str:
    """A JavaScript literal for ``value`` (JSON is valid JavaScript here)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _label(text: str, suffix: str = "") -> str:
    """Zapier labels are 2-64 characters."""
    return (text[: 64 - len(suffix)] + suffix).strip()


def authentication() -> dict:
    return {
        "type": "custom",
        "fields": [
            {"key": "serviceUrl", "label": "Service URL", "type": "string", "required": True,
             "helpText": "Where your tiktok-connector runs, e.g. `https://tiktok.example.com` "
                         "(no trailing slash)."},
            {"key": "apiKey", "label": "API Key", "type": "password", "required": True,
             "helpText": "A caller key of the service (`connector keys create --name zapier`)."},
            {"key": "provider", "label": "Provider", "type": "string", "required": False,
             "choices": list(PROVIDER_NAMES),
             "helpText": "The TikTok data provider to use. Leave empty for the service's default."},
            {"key": "providerKey", "label": "Provider Key", "type": "password", "required": False,
             "helpText": "Your own key for that provider (for tiktok_research `client_key:client_secret`). "
                         "Leave empty to use the service's credentials."},
        ],
        # Listing hooks is authenticated and free: it proves the URL and the key without spending credits.
        "test": {"url": f"{SERVICE_URL}/api/v1/hooks", "method": "GET"},
        "connectionLabel": "{{bundle.authData.serviceUrl}}",
    }


def request_template() -> dict:
    return {
        "headers": {
            "Authorization": "Bearer {{bundle.authData.apiKey}}",
            "X-Provider": "{{bundle.authData.provider}}",
            "X-Provider-Key": "{{bundle.authData.providerKey}}",
            "X-Request-Source": "ZAPIER",
            "Accept": "application/json",
        },
    }


# Zapier leaves ``{{bundle.authData.provider}}`` unrendered when the optional field is empty
# (and ``removeMissingValuesFrom`` covers only params and body): drop such headers so the
# service's defaults apply instead of an "unknown provider" error.
DROP_UNSET_HEADERS = {
    "args": ["request", "z", "bundle"],
    "source": "for (const [name, value] of Object.entries(request.headers || {})) {\n"
              "  if (value === undefined || value === null || String(value).trim() === '' "
              "|| String(value).includes('{{')) delete request.headers[name];\n"
              "}\n"
              "return request;",
}


# Users see the service's own message ("Followers list not found for user: x"), not Zapier's
# dump of the whole response; requests that handle statuses themselves opt out.
SERVICE_ERRORS = {
    "args": ["response", "z", "bundle"],
    "source": "if (response.status < 400 || (response.request || {}).skipThrowForStatus) return response;\n"
              "let message = '';\n"
              "try { message = JSON.parse(response.content).error; } catch (err) { message = ''; }\n"
              "message = String(message || `The service answered HTTP ${response.status}.`).slice(0, 240);\n"
              "if (response.status === 429) {\n"
              "  throw new z.errors.ThrottledError(message, Number(response.headers.get('retry-after')) || 60);\n"
              "}\n"
              "throw new z.errors.Error(message, response.status === 401 ? 'AuthenticationError' : "
              "'ServiceError', response.status);",
}


# A REST-hook delivery counts only when its Standard Webhooks signature checks out:
# ``webhook-signature`` holds ``v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">``
# (space-separated when there are several), keyed by the base64 part of the ``whsec_`` secret
# that subscribing returned (``bundle.subscribeData.secret``). Zapier hands the headers over as
# ``Http-Webhook-Id`` etc. in ``bundle.rawRequest``; names are compared without that prefix and
# case. Web Crypto (``globalThis.crypto``, Node's own crypto module) verifies in constant time.
# A delivery that is unsigned, signed with another secret, altered, or more than
# ``SIGNATURE_TOLERANCE`` seconds off the clock (a replay) is dropped: ``[]`` fires nothing.
SIGNATURE_TOLERANCE = 300
VERIFY_DELIVERY = {
    "source": (
        "const raw = bundle.rawRequest || {};\n"
        "const headers = {};\n"
        "for (const [name, value] of Object.entries(raw.headers || {})) {\n"
        "  headers[String(name).toLowerCase().replace(/^http-/, '')] = String(value);\n"
        "}\n"
        "const id = headers['webhook-id'] || '';\n"
        "const timestamp = headers['webhook-timestamp'] || '';\n"
        "const secret = String((bundle.subscribeData || {}).secret || '');\n"
        "const body = typeof raw.content === 'string' ? raw.content : '';\n"
        "if (!id || !/^[0-9]{1,12}$/.test(timestamp) || !secret.startsWith('whsec_') || !body) return [];\n"
        f"if (Math.abs(Date.now() / 1000 - Number(timestamp)) > {SIGNATURE_TOLERANCE}) return [];\n"
        "const subtle = globalThis.crypto.subtle;\n"
        "const key = await subtle.importKey('raw', Buffer.from(secret.slice('whsec_'.length), 'base64'),\n"
        "  {name: 'HMAC', hash: 'SHA-256'}, false, ['verify']);\n"
        "const signed = Buffer.from(`${id}.${timestamp}.${body}`, 'utf8');\n"
        "for (const entry of (headers['webhook-signature'] || '').split(' ')) {\n"
        "  const comma = entry.indexOf(',');\n"
        "  if (comma < 0 || entry.slice(0, comma) !== 'v1') continue;\n"
        "  const signature = Buffer.from(entry.slice(comma + 1), 'base64');\n"
        "  if (signature.length === 32 && await subtle.verify('HMAC', key, signature, signed)) {\n"
        "    try { return [JSON.parse(body)]; } catch (err) { return []; }\n"
        "  }\n"
        "}\n"
        "return [];"
    ),
}


def input_field(spec: dict) -> dict:
    field = {"key": spec["key"], "label": spec["label"], "type": INPUT_TYPES[spec["type"]],
             "required": spec["required"], "helpText": spec["help"]}
    if spec["type"] == "enum":
        field["choices"] = list(spec["choices"])
    if "default" in spec:
        field["default"] = str(spec["default"]).lower() if isinstance(spec["default"], bool) else str(spec["default"])
    if "example" in spec and spec["type"] in ("string", "cursor"):
        field["placeholder"] = str(spec["example"])
    return field


def output_fields(manifest: dict) -> list[dict]:
    output = manifest["output"]
    fields = []
    for spec in output["fields"]:
        field = {"key": flat_key(spec["key"]), "label": spec["label"], "type": OUTPUT_TYPES[spec["type"]]}
        if spec["key"] == output.get("id"):
            field["primary"] = True
        fields.append(field)
    if "list" in output:
        for spec in output["itemFields"]:
            fields.append({"key": f"{output['list']}[]{flat_key(spec['key'])}",
                           "label": f"{manifest['noun']}: {spec['label']}",
                           "type": OUTPUT_TYPES[spec["type"]]})
    return fields


def _body_source(keys: list[str]) -> str:
    """JS that builds a request body from the user's inputs, skipping empty ones."""
    return (f"const body = {{requestSource: 'ZAPIER'}};\n"
            f"for (const key of {_js(keys)}) {{\n"
            "  const value = bundle.inputData[key];\n"
            "  if (value !== undefined && value !== null && value !== '') body[key] = value;\n"
            "}\n")


def action_perform(manifest: dict, kind: str) -> dict:
    """A search returns ``[result]``; a create returns ``result``."""
    keys = [spec["key"] for spec in user_inputs(manifest)]
    result = "[response.data]" if kind == "search" else "response.data"
    source = (JS_BASE + _body_source(keys)
              + f"const response = await z.request({{url: base + {_js(manifest['route'])}, "
                f"method: {_js(manifest['method'])}, body}});\n"
              + f"return {result};")
    return {"source": source}


def _operation(manifest: dict, inputs: list[dict], perform) -> dict:
    return {
        "inputFields": [input_field(spec) for spec in inputs],
        "outputFields": output_fields(manifest),
        "sample": manifest["sample"],
        "perform": perform,
    }


def _display(manifest: dict, label: str, description: str | None = None) -> dict:
    return {"label": label, "description": description or manifest["description"]}


def polling_request(manifest: dict, inputs: list[dict]) -> dict:
    body = {spec["key"]: f"{{{{bundle.inputData.{spec['key']}}}}}" for spec in inputs}
    body["requestSource"] = "ZAPIER"
    return {"url": SERVICE_URL + manifest["route"], "method": manifest["method"], "body": body,
            "removeMissingValuesFrom": {"body": True, "params": True}}


def polling_trigger(manifest: dict) -> dict:
    inputs = user_inputs(manifest)
    return {
        "key": manifest["key"],
        "noun": manifest["noun"],
        "display": _display(manifest, manifest["label"]),
        "operation": {"type": "polling", **_operation(manifest, inputs, polling_request(manifest, inputs))},
    }


def hook_trigger(manifest: dict) -> dict:
    """REST hook: subscribe with Zapier's target URL, deliveries are the events themselves."""
    hooks = manifest["hooks"]
    # The hooks route takes the watched account and the trigger's own inputs (filters...);
    # ``limit`` shapes polls only.
    inputs = hook_inputs(manifest)
    body = {spec["key"]: f"{{{{bundle.inputData.{spec['key']}}}}}" for spec in inputs}
    subscribe = {"url": SERVICE_URL + hooks["route"], "method": "POST",
                 "body": {"event": hooks["event"], **body, "targetUrl": "{{bundle.targetUrl}}"},
                 "removeMissingValuesFrom": {"body": True, "params": True}}
    # DELETE answers 204 without a body, which a request object cannot return: a function does.
    # A hook that is already gone (404, 410) is as unsubscribed as it gets.
    unsubscribe = {"source": JS_BASE + (
        f"const id = encodeURIComponent(String((bundle.subscribeData || {{}}).id || ''));\n"
        f"const response = await z.request({{url: base + {_js(hooks['route'] + '/')} + id, "
        "method: 'DELETE', skipThrowForStatus: true});\n"
        "if (response.status >= 400 && response.status !== 404 && response.status !== 410) "
        "response.throwForStatus();\n"
        "return {id: (bundle.subscribeData || {}).id, unsubscribed: true};")}
    return {
        "key": f"{manifest['key']}_instant",
        "noun": manifest["noun"],
        "display": _display(manifest, _label(manifest["label"], " (Instant)"),
                            manifest["description"] + " Instant: the service pushes each event to Zapier."),
        "operation": {
            "type": "hook",
            # Deliveries: the signed event itself, or nothing when the signature fails.
            **_operation(manifest, inputs, VERIFY_DELIVERY),
            "performSubscribe": subscribe,
            "performUnsubscribe": unsubscribe,
            # Samples for the Zap editor: recent events from the polling route, same shape as deliveries.
            "performList": polling_request(manifest, inputs),
        },
    }


def action(manifest: dict, kind: str) -> dict:
    inputs = user_inputs(manifest)
    return {
        "key": manifest["key"],
        "noun": manifest["noun"],
        "display": _display(manifest, manifest["label"]),
        "operation": _operation(manifest, inputs, action_perform(manifest, kind)),
    }


def build(manifests) -> dict:
    """The integration definition (plain JSON) for ``manifests``."""
    triggers, searches, creates = {}, {}, {}
    for key, manifest in as_data(manifests).items():
        kind = platform_type(manifest, "zapier")
        if manifest["kind"] == "trigger":
            triggers[key] = polling_trigger(manifest)
            if "hooks" in manifest:
                instant = hook_trigger(manifest)
                triggers[instant["key"]] = instant
        elif kind == "create":
            creates[key] = action(manifest, "create")
        else:
            searches[key] = action(manifest, "search")
    return {
        "authentication": authentication(),
        "requestTemplate": request_template(),
        "beforeRequest": [DROP_UNSET_HEADERS],
        "afterResponse": [SERVICE_ERRORS],
        "triggers": triggers,
        "searches": searches,
        "creates": creates,
    }


INDEX_JS = """\
// Generated by `connector export zapier` from the connector's manifests: edit the
// manifests and export again rather than editing this file.
const definition = require('./integration.json');

// Functions in integration.json are {"source": ..., "args": [...]}, the form zapier-platform-core
// compiles itself. Compiling them here as well gives the tests (createAppTester) real functions.
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
const compile = (value) => {
  if (Array.isArray(value)) return value.map(compile);
  if (!value || typeof value !== 'object') return value;
  const keys = Object.keys(value);
  if (typeof value.source === 'string' && keys.every((key) => key === 'source' || key === 'args')) {
    return new AsyncFunction(...(value.args || ['z', 'bundle']), value.source);
  }
  return Object.fromEntries(keys.map((key) => [key, compile(value[key])]));
};

module.exports = {
  ...compile(definition),
  version: require('./package.json').version,
  platformVersion: require('zapier-platform-core').version,
};
"""

GITIGNORE = """\
node_modules/
build/
*.zip
# Credentials for `npm test` and `zapier-platform invoke`: never commit them.
.env
"""

# test/helpers.js: credentials and inputs for the integration's own tests.
HELPERS_JS = """\
// Generated by `connector export zapier`. What the tests in this folder share.
//
// Credentials come from this folder's .env, the file `zapier-platform invoke` reads:
//   authData_serviceUrl=https://tiktok.example.com
//   authData_apiKey=<a caller key: connector keys create --name zapier>
//   authData_provider=...        (optional)
//   authData_providerKey=...     (optional)
// Inputs default to the manifests' examples; override one with inputData_<key>=...
// (e.g. inputData_handle=someaccount).
const crypto = require('crypto');
const zapier = require('zapier-platform-core');

zapier.tools.env.inject();

const fromEnv = (prefix) => {
  const values = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (name.startsWith(prefix) && value !== '') values[name.slice(prefix.length)] = value;
  }
  return values;
};

const REQUIRED_AUTH = %(required_auth)s;

const authData = () => {
  const auth = fromEnv('authData_');
  const missing = REQUIRED_AUTH.filter((key) => !auth[key]);
  if (missing.length) {
    throw new Error(
      `Set ${missing.map((key) => `authData_${key}`).join(' and ')} in ${process.cwd()}/.env: ` +
        'the tests run against your live service.',
    );
  }
  return auth;
};

const inputData = (defaults) => {
  const overrides = fromEnv('inputData_');
  const input = { ...defaults };
  for (const key of Object.keys(defaults)) {
    if (key in overrides) input[key] = overrides[key];
  }
  return input;
};

// A delivery as the service sends it (Standard Webhooks), in the shape Zapier hands to perform.
const signedDelivery = (event, secret, { id = event.id, timestamp = Math.floor(Date.now() / 1000) } = {}) => {
  const content = JSON.stringify(event);
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const mac = crypto.createHmac('sha256', key).update(`${id}.${timestamp}.${content}`).digest('base64');
  return {
    cleanedRequest: JSON.parse(content),
    rawRequest: {
      method: 'POST',
      querystring: '',
      content,
      headers: {
        'Http-Content-Type': 'application/json',
        'Http-Webhook-Id': id,
        'Http-Webhook-Timestamp': String(timestamp),
        'Http-Webhook-Signature': `v1,${mac}`,
      },
    },
  };
};

const newSecret = () => `whsec_${crypto.randomBytes(24).toString('base64')}`;

// The keys a result must have at its top level.
const expectKeys = (record, keys) => {
  expect(record).toEqual(expect.any(Object));
  expect(Object.keys(record)).toEqual(expect.arrayContaining(keys));
};

module.exports = { authData, inputData, signedDelivery, newSecret, expectKeys };
"""

AUTH_TEST_JS = """\
/* globals describe, it, expect */
// Generated by `connector export zapier`: the connection test against your live service.
const zapier = require('zapier-platform-core');

const App = require('../index');
const { authData } = require('./helpers');

const appTester = zapier.createAppTester(App);

describe('authentication', () => {
  it('accepts the key in .env', async () => {
    await expect(appTester(App.authentication.test, { authData: authData() })).resolves.toBeDefined();
  });

  it('rejects a wrong key', async () => {
    const bundle = { authData: { ...authData(), apiKey: 'not-a-valid-key' } };
    await expect(appTester(App.authentication.test, bundle)).rejects.toThrow(/AuthenticationError/);
  });
});
"""

TEST_HEADER = """\
/* globals describe, it, expect */
// Generated by `connector export zapier`: %(what)s against your live service.
const zapier = require('zapier-platform-core');

const App = require('../index');
const { %(imports)s } = require('./helpers');

const appTester = zapier.createAppTester(App);
"""


def _test_inputs(manifest: dict) -> dict:
    """The inputs a test sends: every required input, with the manifest's example."""
    return {spec["key"]: example_value(spec) for spec in user_inputs(manifest)
            if spec["required"] and example_value(spec) is not None}


def _top_keys(manifest: dict) -> list[str]:
    output = manifest["output"]
    keys = [spec["key"].split(".")[0] for spec in output["fields"]]
    if "list" in output:
        keys.append(output["list"])
    return sorted(set(keys))


def _polling_test(manifest: dict) -> str:
    key, id_key = manifest["key"], manifest["output"].get("id", "id")
    return f"""
describe('triggers.{key}', () => {{
  it('returns recent events from the service, each with a unique {id_key}', async () => {{
    const bundle = {{ authData: authData(), inputData: inputData({_js(_test_inputs(manifest))}) }};
    const results = await appTester(App.triggers.{key}.operation.perform, bundle);
    expect(Array.isArray(results)).toBe(true);
    expect(results.length).toBeGreaterThan(0);
    const ids = results.map((record) => record.{id_key});
    expect(ids.every(Boolean)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    results.forEach((record) => expectKeys(record, {_js(_top_keys(manifest))}));
  }});
}});
"""


def _hook_test(manifest: dict) -> str:
    key = f"{manifest['key']}_instant"
    event = _js(manifest["sample"])
    return f"""
describe('triggers.{key}', () => {{
  const perform = App.triggers.{key}.operation.perform;
  const event = {event};
  const secret = newSecret();

  it('lists sample events from the service', async () => {{
    const bundle = {{ authData: authData(), inputData: inputData({_js(_test_inputs(manifest))}) }};
    const results = await appTester(App.triggers.{key}.operation.performList, bundle);
    expect(Array.isArray(results)).toBe(true);
    expect(results.length).toBeGreaterThan(0);
    results.forEach((record) => expectKeys(record, {_js(_top_keys(manifest))}));
  }});

  it('fires on a delivery signed with the subscription secret', async () => {{
    const bundle = {{ ...signedDelivery(event, secret), subscribeData: {{ id: 'hook_test', secret }} }};
    expect(await appTester(perform, bundle)).toEqual([event]);
  }});

  it('drops a delivery changed after signing', async () => {{
    const bundle = {{ ...signedDelivery(event, secret), subscribeData: {{ id: 'hook_test', secret }} }};
    bundle.rawRequest.content = bundle.rawRequest.content.replace(event.id, 'evt_forged');
    expect(await appTester(perform, bundle)).toEqual([]);
  }});

  it('drops a delivery signed with another secret, unsigned, or replayed late', async () => {{
    const subscribeData = {{ id: 'hook_test', secret }};
    const other = {{ ...signedDelivery(event, newSecret()), subscribeData }};
    expect(await appTester(perform, other)).toEqual([]);
    const unsigned = {{ ...signedDelivery(event, secret), subscribeData }};
    delete unsigned.rawRequest.headers['Http-Webhook-Signature'];
    expect(await appTester(perform, unsigned)).toEqual([]);
    const late = {{ ...signedDelivery(event, secret, {{ timestamp: Math.floor(Date.now() / 1000) - 3600 }}),
      subscribeData }};
    expect(await appTester(perform, late)).toEqual([]);
  }});
}});
"""


def _search_test(manifest: dict) -> str:
    key = manifest["key"]
    return f"""
describe('searches.{key}', () => {{
  it('returns one result from the service', async () => {{
    const bundle = {{ authData: authData(), inputData: inputData({_js(_test_inputs(manifest))}) }};
    const results = await appTester(App.searches.{key}.operation.perform, bundle);
    expect(Array.isArray(results)).toBe(true);
    expect(results.length).toBe(1);
    expectKeys(results[0], {_js(_top_keys(manifest))});
  }});
}});
"""


def tests(manifests) -> dict[str, str]:
    """The integration's own tests: auth, every trigger, every search, against a live service."""
    data = as_data(manifests)
    triggers = [m for m in data.values() if m["kind"] == "trigger"]
    searches = [m for m in data.values() if m["kind"] != "trigger" and platform_type(m, "zapier") == "search"]
    required_auth = [f["key"] for f in authentication()["fields"] if f["required"]]
    files = {
        "test/helpers.js": HELPERS_JS % {"required_auth": _js(required_auth)},
        "test/authentication.test.js": AUTH_TEST_JS,
    }
    if triggers:
        imports = "authData, inputData, expectKeys"
        if any("hooks" in m for m in triggers):
            imports += ", signedDelivery, newSecret"
        body = "".join(_polling_test(m) + (_hook_test(m) if "hooks" in m else "") for m in triggers)
        files["test/triggers.test.js"] = TEST_HEADER % {"what": "the triggers", "imports": imports} + body
    if searches:
        body = "".join(_search_test(m) for m in searches)
        files["test/searches.test.js"] = (TEST_HEADER % {"what": "the searches",
                                                         "imports": "authData, inputData, expectKeys"} + body)
    return files


def package_json() -> dict:
    return {
        "name": "tiktok-connector-zapier",
        "version": APP_VERSION,
        "description": "TikTok profile, followers and following, and triggers on followers and following, "
                       "through a self-hosted tiktok-connector.",
        "main": "index.js",
        "private": True,
        # Zapier's CLI (zapier-platform-cli 19, which validates, tests, builds and pushes this
        # app) refuses Node before 22; Web Crypto as a global (the signature check) needs 20+.
        "engines": {"node": ">=22"},
        # `zapier-platform test` runs `npm test`: the tests in test/ against the service in .env.
        "scripts": {"test": "jest --testTimeout 10000"},
        "dependencies": {"zapier-platform-core": ZAPIER_CORE_VERSION},
        "devDependencies": {"jest": JEST_VERSION},
    }


def render(manifests) -> dict[str, str]:
    """``{file name: content}`` of the Zapier CLI integration, its tests included."""
    return {
        "package.json": dump_json(package_json()),
        "index.js": INDEX_JS,
        DEFINITION_FILE: dump_json(build(manifests)),
        ".gitignore": GITIGNORE,
        **tests(manifests),
    }
