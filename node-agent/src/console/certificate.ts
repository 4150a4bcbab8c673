// The console endpoint's TLS identity: a self-signed certificate made at agent start. Clients
// trust it by its SHA-256 fingerprint, which the agent publishes in the status of each console
// action it takes up (an API object only this node's agent may write), so no CA is needed.
import { createHash, generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import forge from 'node-forge';

export interface ConsoleCertificate {
  key: string;
  cert: string;
  /** SHA-256 of the certificate's DER encoding, lowercase hex. */
  sha256: string;
}

const VALID_DAYS = 3650;

export function selfSignedCertificate(commonName: string): ConsoleCertificate {
  // node-forge signs with RSA only; the key is made natively (fast), the certificate by forge.
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = rsa.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(
    rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  );
  cert.serialNumber = `01${randomBytes(15).toString('hex')}`;
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + VALID_DAYS * 86_400_000);
  const subject = [{ name: 'commonName', value: commonName }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.sign(forge.pki.privateKeyFromPem(keyPem), forge.md.sha256.create());
  const pem = forge.pki.certificateToPem(cert);
  const der = new X509Certificate(pem).raw;
  return { key: keyPem, cert: pem, sha256: createHash('sha256').update(der).digest('hex') };
}
