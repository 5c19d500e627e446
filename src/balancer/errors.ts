// The errors of the leader balancer. It throws only while checking a configuration (at start-up
// or on reconfigure), naming the first bad field; the runtime turns that into InvalidArgument.
import { FlotillaError } from '../errors.js';

export type BalancerErrorCode =
  /** A key the balancer (or one of its sections) does not know: a typo, or a setting of another version. */
  | 'UnknownSetting'
  /** A known setting with a value of the wrong type or out of range. */
  | 'InvalidSetting';

export class BalancerConfigError extends FlotillaError<BalancerErrorCode> {
  /** `field`: the setting's path as an operator writes it, e.g. "balancer.health.factor". */
  constructor(
    code: BalancerErrorCode,
    readonly field: string,
    why: string,
  ) {
    super(code, `${field}: ${why}`);
  }
}
