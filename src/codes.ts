/**
 * Every stable code this package reports, in diagnostics and in {@link ReedError}s alike, with a one-line
 * meaning. Codes never change once released; docs/CODES.md lists them and a test keeps the two in step.
 */
export const CODES = {
  // Manifest (plugin.toml)
  manifest_unreadable: 'plugin.toml could not be read',
  manifest_too_large: 'plugin.toml is larger than the configured cap',
  manifest_syntax: 'plugin.toml is not valid TOML',
  manifest_missing_field: 'a required manifest field is missing',
  manifest_invalid_type: 'a manifest field has the wrong type',
  manifest_invalid_value: 'a manifest field has a value outside what it accepts',
  manifest_unknown_key: 'a manifest key is not part of the format (warning)',
  invalid_semver: 'a version or version range is not valid semver',
  plugin_type_unsupported: 'the plugin type is not supported (script)',
  plugin_type_undetected: 'no plugin_type and no plugin.wasm or plugin library to detect it from',
  plugin_type_ambiguous: 'the plugin directory holds both a WASM module and a native library',
  entry_point_missing: 'the entry point file does not exist',
  entry_point_not_file: 'the entry point is not a regular file',

  // Discovery
  search_path_unreadable: 'a search path exists but could not be listed (warning)',
  search_path_insecure: 'a search path is world-writable and was skipped',
  duplicate_id: 'the same plugin id was found more than once',

  // Validation rules
  api_version_mismatch: 'the plugin needs another major version of the plugin API',
  api_version_newer: 'the plugin uses a newer minor version of the plugin API (warning)',
  reed_version_unmet: 'the host is older than the plugin\u2019s min_reed_version',
  permission_denied_by_policy: 'the plugin requests a permission the host policy does not grant',
  capability_unavailable: 'the plugin requires a capability the host does not provide',
  limit_exceeds_policy: 'a limit in the manifest is above the host policy\u2019s ceiling',
  sandbox_mode_denied: 'the manifest asks for a sandbox mode the host policy does not allow',
  dependency_missing: 'a required dependency is not available',
  dependency_optional_missing: 'an optional dependency is not available (warning)',
  dependency_version_mismatch: 'a dependency is present in a version outside the required range',
  dependency_invalid: 'a dependency is present but invalid itself',
  dependency_self: 'the plugin lists itself as a dependency',
  dependency_duplicate: 'the same dependency is listed twice',
  dependency_cycle: 'dependencies form a cycle',
  path_traversal: 'a path in the manifest leaves the plugin directory',
  symlink_escape: 'a symlink in the plugin directory points outside it',
  symlink_dangling: 'a symlink in the plugin directory points nowhere (warning)',
  world_writable: 'a file or directory of the plugin is world-writable',
  special_file: 'the plugin directory holds a device, FIFO or socket',
  file_too_large: 'a file of the plugin is larger than the configured cap',
  plugin_too_large: 'the plugin\u2019s files add up to more than the configured cap',
  too_many_files: 'the plugin directory holds more files than the configured cap',
  too_deep: 'the plugin directory nests deeper than the configured cap',

  // Host configuration and CLI
  config_unreadable: 'the host configuration file could not be read',
  config_invalid: 'the host configuration has a wrong field',
  usage: 'the command line is wrong',
  plugin_not_found: 'no plugin with that id or path',
} as const;

export type Code = keyof typeof CODES;

export function isCode(value: unknown): value is Code {
  return typeof value === 'string' && Object.hasOwn(CODES, value);
}
