// Exits 0 when a Docker engine answers (DOCKER_HOST or the default socket), 1 otherwise. Used by setup.sh.
import Docker from 'dockerode';

const docker = new Docker({ timeout: 3_000 });
try {
  await docker.ping();
  const version = await docker.version();
  process.stdout.write(`${version.Version}\n`);
} catch (error) {
  process.stderr.write(`${error?.message ?? error}\n`);
  process.exit(1);
}
