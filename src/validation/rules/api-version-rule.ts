import semver from 'semver';
import type { ValidationRule } from '../rule.js';

/** The plugin API's major must match the host's; a newer minor warns. Also checks `min_reed_version`. */
export const apiVersionRule: ValidationRule = {
  name: 'ApiVersionRule',
  validate(candidate, context, report) {
    const at = { file: candidate.manifestPath, pluginId: candidate.id };
    const wanted = parsedVersion(candidate.manifest.metadata.apiVersion);
    const host = parsedVersion(context.apiVersion);
    if (wanted !== null && host !== null) {
      if (wanted.major !== host.major) {
        report({
          code: 'api_version_mismatch',
          severity: 'error',
          message: `plugin "${candidate.id}" needs plugin API ${wanted.version}, but this host provides ${host.version} (majors differ): rebuild it against API ${host.major}.x`,
          field: 'metadata.api_version',
          ...at,
        });
      } else if (wanted.minor > host.minor) {
        report({
          code: 'api_version_newer',
          severity: 'warning',
          message: `plugin "${candidate.id}" was built for plugin API ${wanted.version}, newer than this host's ${host.version}: features it uses may be missing`,
          field: 'metadata.api_version',
          ...at,
        });
      }
    }
    const minReed = candidate.manifest.requirements.minReedVersion;
    if (minReed !== undefined && semver.valid(minReed) !== null && semver.lt(context.reedVersion, minReed)) {
      report({
        code: 'reed_version_unmet',
        severity: 'error',
        message: `plugin "${candidate.id}" needs ReedCMS ${minReed} or newer; this host is ${context.reedVersion}`,
        field: 'requirements.min_reed_version',
        ...at,
      });
    }
  },
};

/**
 * semver.parse, remembered for the last few hundred strings: the host's own API version and the few versions
 * plugins name are parsed again for every plugin otherwise. The objects are only read.
 */
const parsed = new Map<string, semver.SemVer | null>();
const PARSED_MAX = 256;

function parsedVersion(version: string): semver.SemVer | null {
  let v = parsed.get(version);
  if (v === undefined) {
    v = semver.parse(version);
    if (parsed.size >= PARSED_MAX) parsed.clear();
    parsed.set(version, v);
  }
  return v;
}
