// Build faults: a reason code, a message a user can act on, and whether another node could
// succeed (the operator reschedules those).
import { KovaError } from '@kova/controller-kit';

export class BuildFault extends KovaError {
  constructor(
    reason: string,
    message: string,
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(reason, message, options);
    this.name = 'BuildFault';
  }
}
