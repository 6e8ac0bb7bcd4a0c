/** The plugin API this host implements. Plugins declare theirs in `metadata.api_version`; majors must match. */
export const PLUGIN_API_VERSION = '1.0.0';

/** This package's version; also the default `reed_version` that `min_reed_version` is checked against. */
export const LOADER_VERSION = '0.1.0';
