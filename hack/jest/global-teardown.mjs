export default async function globalTeardown() {
  await globalThis.kovaControlPlane?.stop();
}
