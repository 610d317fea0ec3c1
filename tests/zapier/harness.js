#!/usr/bin/env node
// Checks a generated Zapier integration with Zapier's own packages (see tests/test_export_zapier.py).
//
//   node harness.js validate APP_DIR
//       -> {"app": [...], "operations": {"triggers.KEY": [...], ...}, "platformVersion": "..."}
//   node harness.js run APP_DIR METHOD BUNDLE_JSON
//       -> {"ok": true, "results": ...} or {"ok": false, "name": "...", "message": "..."}
//
// APP_DIR/index.js requires zapier-platform-core: run with NODE_PATH pointing at this
// folder's node_modules. Run with NODE_ENV=test so core enforces its result checks.
'use strict';

const path = require('path');

const [command, appDir, method, bundleJson] = process.argv.slice(2);

const print = (value) => process.stdout.write(JSON.stringify(value) + '\n');

const loadApp = () => require(path.resolve(appDir, 'index.js'));

// The schema checks the definition as data (functions as {"source": ...}), the way Zapier's
// CLI serialises it before validating: integration.json plus the versions index.js adds.
const loadDefinition = () => {
  const App = loadApp();
  const definition = require(path.resolve(appDir, 'integration.json'));
  return { ...definition, version: App.version, platformVersion: App.platformVersion };
};

const validate = () => {
  const schema = require('zapier-platform-schema');
  const App = loadDefinition();
  const out = {
    app: schema.validateAppDefinition(App).errors.map((e) => `${e.property}: ${e.message}`),
    operations: {},
    platformVersion: App.platformVersion,
    version: App.version,
  };
  // The per-operation schemas catch what the app-level check lets through (a missing sample).
  const kinds = { triggers: 'TriggerSchema', searches: 'SearchSchema', creates: 'CreateSchema' };
  for (const [group, schemaName] of Object.entries(kinds)) {
    const opSchema = require(`zapier-platform-schema/lib/schemas/${schemaName}`);
    for (const [key, op] of Object.entries(App[group] || {})) {
      out.operations[`${group}.${key}`] = opSchema
        .validate(op)
        .errors.map((e) => `${e.property}: ${e.message}`);
    }
  }
  print(out);
};

const run = async () => {
  const core = require('zapier-platform-core');
  const App = loadApp();
  const handler = core.createAppHandler(App);
  const bundle = JSON.parse(bundleJson || '{}');
  try {
    const output = await handler({ command: 'execute', method, bundle }, {});
    print({ ok: true, results: output.results });
  } catch (err) {
    print({ ok: false, name: err.name, message: String(err.message) });
  }
};

if (command === 'validate') {
  validate();
} else if (command === 'run') {
  run();
} else {
  process.stderr.write('usage: harness.js validate APP_DIR | run APP_DIR METHOD BUNDLE_JSON\n');
  process.exit(2);
}
