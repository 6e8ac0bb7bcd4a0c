// The layers of src/ (docs/ARCHITECTURE.md, "Layers"): each may import only the layers below it, and no folders
// import each other in a cycle. `npm run lint` runs this; test/unit/layers.test.ts proves it rejects an upward import.
// A new folder under src/ must be added to a layer here, or the `unlayered` rule fails.

/** Lowest first. `path` is matched against paths relative to the repository root. */
const LAYERS = [
  // Files directly in src/ (codes, errors, diagnostics, json, safe-text, schema-check, toml, version) are the ground floor,
  // all but index.ts, the public API on top.
  { name: 'ground', path: '^src/((?!index[.]ts$)[^/]+[.]ts$|(types|manifest|events)/)' },
  { name: 'analysis', path: '^src/(discovery|validation|dependencies|signing|pki|cache|runtime)/' },
  { name: 'protocol', path: '^src/(protocol|transport)/' },
  { name: 'backends', path: '^src/(backends|sandbox|container)/' },
  { name: 'host', path: '^src/(host|plan)/' },
  // Tenants: namespaces of plugins, each with its own PluginHost, their quotas, tokens, accounting and audit.
  { name: 'platform', path: '^src/tenants/' },
  { name: 'api', path: '^src/((server|cli)/|index[.]ts$)' },
];

const any = (paths) => paths.map((p) => `(${p})`).join('|');

const upward = LAYERS.slice(0, -1).map((layer, i) => ({
  name: `layer-${layer.name}-imports-up`,
  comment: `${layer.name} may import only the layers below it (${
    LAYERS.slice(0, i)
      .map((l) => l.name)
      .join(', ') || 'nothing but node: and packages'
  })`,
  severity: 'error',
  from: { path: layer.path },
  to: { path: any(LAYERS.slice(i + 1).map((l) => l.path)) },
}));

module.exports = {
  forbidden: [
    ...upward,
    {
      name: 'runtime-imports-analysis',
      comment:
        'runtime sits beside plugin analysis and imports only the ground floor and cache/ (the store its WASM preparation goes through): the runner loads it without the host side',
      severity: 'error',
      from: { path: '^src/runtime/' },
      to: { path: '^src/(discovery|validation|dependencies|signing)/' },
    },
    {
      name: 'cache-imports-above-ground',
      comment: 'cache/ is a content-addressed store under runtime: it imports only the ground floor',
      severity: 'error',
      from: { path: '^src/cache/' },
      to: { path: '^src/', pathNot: LAYERS[0].path },
    },
    {
      name: 'runner-imports-host-side',
      comment: 'sandbox-runner/ (the runner program) may import the ground floor, runtime and protocol only',
      severity: 'error',
      from: { path: '^sandbox-runner/' },
      to: { path: '^src/', pathNot: any([LAYERS[0].path, '^src/runtime/', LAYERS[2].path]) },
    },
    {
      name: 'dockerode-behind-engine-client',
      comment:
        'the container backend reaches Docker through its engine client (src/backends/container/engine-client.ts): only its dockerode implementation imports dockerode',
      severity: 'error',
      from: {
        path: '^(src|sandbox-runner)/',
        pathNot: '^src/backends/container/dockerode-client[.]ts$',
      },
      to: { path: '(^|/)node_modules/dockerode/' },
    },
    {
      name: 'folder-cycle',
      comment: 'no two folders import each other, directly or round a loop',
      severity: 'error',
      scope: 'folder',
      from: { path: '^(src|sandbox-runner)/' },
      to: { circular: true },
    },
    {
      name: 'unlayered',
      comment:
        'every file under src/ belongs to a layer: add its folder to LAYERS in .dependency-cruiser.cjs',
      severity: 'error',
      from: {},
      to: { path: '^src/', pathNot: any(LAYERS.map((l) => l.path)) },
    },
    {
      name: 'unlayered-importer',
      comment:
        'every file under src/ belongs to a layer, or nothing checks what it imports: add its folder to LAYERS',
      severity: 'error',
      from: { path: '^src/', pathNot: any(LAYERS.map((l) => l.path)) },
      to: {},
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports count: a type from a higher layer is still an upward dependency.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.d.ts', '.js', '.mjs', '.cjs'],
    },
  },
};
