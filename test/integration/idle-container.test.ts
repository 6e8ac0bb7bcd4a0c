// Scale to zero in container mode (issue 16, part 2): the container is stopped and removed after idle_timeout
// (deactivate first; the image stays) and another is made on the next call (test/helpers/idle.ts). Runs from dist/
// in the runner image (npm run build); needs Docker (scripts/setup.sh).
import Docker from 'dockerode';
import { describe, expect } from 'vitest';
import { LABEL_SESSION } from '../../src/backends/container/labels.js';
import { IDLE_PLUGIN, idleSuite, until } from '../helpers/idle.js';

const docker = new Docker();

describe('scale to zero, container mode', () => {
  idleSuite(
    'container',
    {
      // No container of this host's left, running or not; the plugin's image is still there.
      async nothingRuns(host) {
        const mine = () =>
          docker.listContainers({ all: true, filters: { label: [`${LABEL_SESSION}=${host.session.id}`] } });
        await until(async () => (await mine()).length === 0, 'no container of this host');
        const images = await docker.listImages({ filters: { reference: [`reed-plugin-${IDLE_PLUGIN}`] } });
        expect(images.length).toBeGreaterThan(0);
      },
    },
    300_000,
  );
});
