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
  filesystem_unsupported: 'a native plugin asks for permissions.filesystem (only WASM plugins get one)',
  replicas_unsupported:
    'the manifest asks for [sandbox] replicas above 1 in mode none (replicas need runners)',
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
  file_name_invalid: 'a file name in the plugin is not UTF-8, has control characters, or is too long',

  // WASM modules (checked before compile)
  wasm_invalid: 'the file is not a valid WebAssembly module',
  wasm_unsupported: 'the module uses a WebAssembly feature this host does not run',
  wasm_too_large: 'the module is larger than the configured cap',
  wasm_limit_exceeded: 'the module has more functions, code or locals than [wasm] limits allow',
  wasm_prepare_failed: 'preparing the module ran past [wasm] prepare_timeout_ms or prepare_memory_mb',
  wasm_import_unknown: 'the module imports something the host does not provide',
  wasm_import_signature: 'the module imports a host function with the wrong signature',
  wasm_abi_mixed:
    'the module imports both Extism\u2019s ABI (extism:host/env) and reed\u2019s host API (env, reed)',
  wasm_abi_mismatch: 'the manifest\u2019s abi names another ABI than the one the module imports',
  extism_host_functions_unsupported:
    'the module imports extism:host/user (its embedder\u2019s own host functions), which this host does not provide',
  wasm_memory_limit: 'the module\u2019s memory starts above the memory cap',
  wasm_table_limit: 'the module\u2019s table starts above the table cap',
  wasm_component_unsupported: 'the file is a WebAssembly component (WASI preview 2), not a core module',
  wasm_no_callable: 'the module exports no function the host can call (warning)',

  // Native libraries and signatures
  native_invalid_library: 'the file is not an ELF shared object for this machine',
  native_symbol_missing: 'the library lacks a required symbol or function pointer',
  native_bad_output: 'the native plugin returned an output buffer the host cannot accept',
  signature_missing: 'the policy requires a signature and the plugin has none',
  signature_invalid: 'the signature does not match the plugin\u2019s files, or cannot be read',
  signature_untrusted: 'the signature is valid but made by a key the host does not trust',
  key_invalid: 'a signing or trusted key cannot be read',

  // Sandboxes (process and container modes)
  sandbox_start_failed: 'the sandbox did not start or did not become ready in time',
  sandbox_crashed: 'the sandbox process exited or was killed while the plugin was running',
  runner_backlogged: 'a call was refused: its runner has not read 32 MiB the host sent it (a wedged runner)',
  handshake_failed: 'a connection to the sandbox socket did not authenticate',
  protocol_violation: 'the sandbox sent a frame that breaks the protocol; the sandbox was stopped',
  memory_limit: 'the sandbox was killed for using more memory than its limit',
  docker_unavailable: 'the Docker engine does not answer',
  image_build_failed: 'building a container image failed',
  image_push_failed: 'pushing a runner image to the swarm\u2019s registry failed (swarm backend)',
  runtime_library_missing: 'a shared library the base image needs cannot be found or read',
  runtime_unavailable: 'the container runtime asked for is not registered with the Docker engine',
  output_truncated: 'a runner\u2019s stdout/stderr was cut at the line cap or over its budget (warning)',
  cleanup_failed: 'a sandbox directory could not be removed safely; it was left in place (warning)',

  // Calls
  fuel_exhausted: 'the call used up its instruction budget (fuel)',
  call_timeout: 'the call ran past its deadline',
  output_too_large: 'the call\u2019s output is larger than the output cap',
  extism_memory_limit: 'an Extism plugin\u2019s memory blocks would pass its memory cap (limits.memory_mb)',
  extism_var_quota_exceeded: 'an Extism plugin\u2019s variables would pass limits.extism_var_bytes',
  storage_quota_exceeded: 'a storage write would pass the plugin\u2019s quota',
  storage_write_failed:
    'the host could not write the plugin\u2019s storage (its disk is full, an I/O error); the write was not made',
  content_quota_exceeded: 'creating content would pass the plugin\u2019s content quota (items or bytes)',
  disk_quota_exceeded: 'a WASI write or extension would pass limits.disk_mb (EDQUOT; a warning)',
  data_dir_unjournaled:
    'data_dir is on ext4 without a journal, where fuel under-prices the names a plugin makes (a warning at the first data directory a host prepares)',
  file_quota_exceeded: 'a new WASI file, directory or link would pass limits.max_files (EDQUOT; a warning)',
  filesystem_full:
    'a WASI write met its file system full (ENOSPC, answered EDQUOT): a warning, and the code of a call that then failed; a tenant with quotas.filesystem_bytes answers quota_exceeded instead',
  argument_too_large: 'the plugin passed the host an argument above its size cap (key, id, topic, data)',
  permission_denied: 'the plugin called a host function its permissions do not allow',
  wasm_trap: 'the module trapped (unreachable, division by zero, bad memory access, ...)',
  wasm_out_of_bounds: 'the module passed a pointer and length outside its memory to the host',
  wasm_stack_overflow: 'the module recursed past the stack limit',
  wasm_no_memory: 'the module exports no memory, but called a host function that needs one',
  invalid_argument: 'the plugin passed the host an argument it cannot use (bad UTF-8, bad JSON, bad key)',
  plugin_error: 'the plugin returned an error of its own',
  function_not_found: 'the plugin has no callable function of that name',
  wasi_args_not_command: 'per-call WASI args or env were given for a plugin that is not a WASI command',
  wasi_args_too_large: 'per-call WASI args and env are above 256 args, 256 variables or 64 KiB in all',
  wasi_args_invalid: 'a per-call WASI arg or variable is not a string, holds a NUL, or has a bad name',
  trace_context_invalid:
    'a call\u2019s trace context (the traceparent header, CallOptions.traceParent, the Call frame\u2019s trace field) is not a W3C traceparent',
  init_failed: 'the plugin\u2019s init failed',
  plugin_not_loaded: 'no loaded plugin has that id',
  plugin_failed: 'the plugin is marked failed and takes no calls',
  native_in_process_denied: 'a native plugin may only run in-process when the policy trusts it',
  host_closed: 'the host is closed',
  plugin_already_loaded: 'the host\u2019s plugin set already has a plugin with that id (replace it instead)',
  plugin_invalid: 'the candidate has errors (it is not valid) and cannot be added to the plugin set',
  dependant_version_mismatch:
    'the upgrade would put the plugin outside the version range a loaded plugin that depends on it requires',
  install_archive_invalid:
    'the plugin archive is not a clean tree of files and directories (a path leaving it, a link, a device, too large, too many files, no manifest)',
  install_id_mismatch:
    'the installed plugin\u2019s manifest id is not the id it is installed as (or that is not a plugin id)',
  install_busy:
    'the host takes in as many plugin archives at once as it allows and as many more installs wait ([lifecycle] max_concurrent_installs, install_queue): retry later (HTTP 503, Retry-After)',
  store_unreadable: 'the pointer of installed plugins under data_dir cannot be read; nothing was guessed',
  store_full:
    'the pointer of installed plugins would pass its 16 MiB cap (what a host reads back): remove plugins before installing more',
  plugin_has_dependants: 'loaded plugins depend on it; remove them with it (withDependants) or keep it',
  sandbox_unavailable: 'the sandbox mode asked for is not available on this host',
  data_dir_unavailable: 'a plugin\u2019s data directory cannot be made, or its path is unsafe',
  cache_error: 'the compile cache could not be used',
  cache_insecure: 'the compile cache directory is writable by others; it is not used (warning)',

  // The serve API (docs/API.md)
  api_not_found: 'no API route at that path',
  api_method_not_allowed: 'the API route does not take that HTTP method',
  request_too_large: 'the request body is larger than the server accepts',
  api_unsupported_media_type:
    'the request body is not of the content type the route takes (application/x-tar)',
  api_bad_request: 'the request has a query parameter the route does not take, or one it cannot read',
  api_unreachable:
    'no reed-plugins serve answers on the socket given (the CLI\u2019s install, remove, reload, status)',
  api_socket_in_use: 'the API socket path is taken by a live server or by a file that is not a socket',
  api_socket_failed: 'the API socket cannot be created there (no such directory, no permission)',
  unauthenticated:
    'the request carries no bearer token, or one that is not valid (unknown, revoked, malformed), where one is required (HTTP 401)',
  forbidden: 'the token is valid but not allowed this route: a tenant token on an admin route (HTTP 403)',
  token_not_found: 'the tenant has no token with that id (DELETE /v1/admin/tenants/{t}/tokens/{tokenId})',
  token_store_unreadable:
    'the token store under data_dir (tokens/) cannot be used: not a private directory of this user, or a file in it is not a token file',
  admin_token_file_invalid:
    'the admin token file (serve --admin-token-file) cannot be read, is open to group or others, or holds no token of at least 32 characters',
  // Tenants (docs/TENANTS.md)
  tenant_not_found: 'no tenant with that id',
  tenant_invalid:
    'a tenant id does not match [a-z0-9][a-z0-9-]{0,62}, or its spec (plugin_dirs, quotas) is wrong, or the tenant cannot be changed that way (the default tenant, one from reed.toml)',
  tenant_exists:
    'a tenant with that id is declared in reed.toml (or is the default tenant) and cannot be created again',
  tenant_store_unreadable:
    'a tenant\u2019s tenant.json under data_dir/tenants/ cannot be read or is not valid',
  tenant_volume_no_space:
    'the disk under data_dir has not the free bytes to reserve a tenant\u2019s file system image (quotas.filesystem_bytes): the tenant is refused, not overcommitted (details: tenant, image, neededBytes, freeBytes; HTTP 507)',
  tenant_volume_damaged:
    'a tenant\u2019s file system image has errors e2fsck -p does not repair (its exit status 4 or above): it is not mounted and that tenant alone is not started (details: tenant, image, exitCode)',
  quota_exceeded:
    'the tenant is at one of its quotas (details: quota, limit, retryAfterMs); other tenants are not affected (HTTP 429)',
  tls_invalid:
    'the TLS certificate, key or client CA of serve --listen cannot be read, is not PEM, or the key does not match the certificate',
  internal_error: 'a fault of the server itself, not of the plugin or the caller; see the host log',

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
