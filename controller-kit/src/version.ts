// `--version`: prints the component's version and exits before anything starts, so a user (or
// the image test) can check a binary and its image without a cluster. Modules imported by the
// entry point, the agent's native libvirt binding among them, have loaded by then.
import { readFileSync } from 'node:fs';

export function exitOnVersionFlag(component: string, packageJson: URL): void {
  if (!process.argv.slice(2).includes('--version')) return;
  const { version } = JSON.parse(readFileSync(packageJson, 'utf8')) as { version: string };
  process.stdout.write(`${component} ${version}\n`);
  process.exit(0);
}
