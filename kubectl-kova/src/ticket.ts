// The one-time ticket that opens a console: the plugin keeps the ticket, the InstanceAction
// carries only its hash, so whoever can read the action (its history, -o yaml, etcd) still cannot
// present the ticket.
import { createHash, randomBytes } from 'node:crypto';

export function newTicket(): { ticket: string; sha256: string } {
  const ticket = randomBytes(32).toString('hex');
  return { ticket, sha256: createHash('sha256').update(ticket, 'utf8').digest('hex') };
}
